r"""Which text token sits at which key position of a stock pipeline's conditioning, and which word it belongs to."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["PromptLayout", "prompt_layout"]


@dataclass
class PromptLayout:
    r"""
    The text keys of a denoiser's conditioning, labelled.

    Args:
        tokens (`list[str]`): the token string at every key position (pads included), `[M]`.
        segments (`list[str]`): the text encoder of every key position (`"clip"` or `"t5"`), `[M]`.
        word_of (`list[int | None]`): the index in `words` of every key position's word; `None` for special
            tokens and padding.
        special (`list[int]`): key positions of the start/end tokens (the first end token of each segment; padding
            copies of it are left out).
        words (`list[str]`): the prompt's whitespace-separated words.
    """

    tokens: list[str]
    segments: list[str]
    word_of: list[int | None]
    special: list[int]
    words: list[str] = field(default_factory=list)

    def word_positions(self, word: int) -> list[int]:
        """Key positions of the sub-word tokens of `words[word]`, over every text encoder."""
        return [i for i, w in enumerate(self.word_of) if w == word]


def _segments(pipe, text_length: int) -> list[tuple[str, object, int]]:
    """(encoder name, tokenizer, number of key positions) in key order, per stock pipeline family."""
    from diffusers import FluxPipeline, PixArtAlphaPipeline, StableDiffusion3Pipeline

    try:
        from diffusers import PixArtSigmaPipeline
    except ImportError:  # pragma: no cover - every diffusers >= 0.28 has it
        PixArtSigmaPipeline = PixArtAlphaPipeline
    if isinstance(pipe, StableDiffusion3Pipeline):  # [CLIP tokens (padded to T5 width), T5 tokens]
        clip = pipe.tokenizer.model_max_length
        t5 = pipe.tokenizer_3 if pipe.text_encoder_3 is not None else None  # without T5: zero embeddings
        return [("clip", pipe.tokenizer, clip), ("t5", t5, text_length - clip)]
    if isinstance(pipe, FluxPipeline):
        return [("t5", pipe.tokenizer_2, text_length)]
    if isinstance(pipe, (PixArtAlphaPipeline, PixArtSigmaPipeline)):
        return [("t5", pipe.tokenizer, text_length)]
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(f"{type(pipe).__name__} has no `tokenizer`; text-to-image maps need a text pipeline.")
    return [("clip", tokenizer, text_length)]  # StableDiffusion(XL): both CLIP encoders share the token positions


def prompt_layout(pipe, prompt: str, text_length: int) -> PromptLayout:
    r"""
    Label the `text_length` text keys the denoiser of `pipe` sees for `prompt`.

    Tokens are re-tokenised exactly as the pipeline does (padding to the same length, truncation) and mapped to the
    prompt's whitespace-separated words through the fast tokenizers' character offsets, so the sub-words of one word
    ("kit" + "ten") and the same word in two encoders (SD3's CLIP and T5 halves) land on one word.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"`prompt` must be a non-empty string, got {prompt!r}.")
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", prompt)]
    words = [prompt[a:b] for a, b in spans]
    layout = PromptLayout([], [], [], [], words)
    for name, tokenizer, length in _segments(pipe, text_length):
        if tokenizer is None:  # an encoder the pipeline replaced by zeros (SD3 without T5): padding only
            layout.tokens += ["<pad>"] * length
            layout.segments += [name] * length
            layout.word_of += [None] * length
            continue
        enc = tokenizer(
            prompt,
            padding="max_length",
            max_length=length,
            truncation=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        mask, special = enc["attention_mask"], enc["special_tokens_mask"]
        if len(ids) != length:
            raise ValueError(
                f"The {name} tokenizer gives {len(ids)} tokens but the denoiser saw {length} text keys; pass the same "
                "`max_sequence_length` to the explainer as to the pipeline."
            )
        start = len(layout.tokens)
        layout.tokens += tokenizer.convert_ids_to_tokens(ids)
        layout.segments += [name] * length
        seen_end = False
        for i, ((a, b), is_special, keep) in enumerate(zip(offsets, special, mask)):
            if is_special or b <= a:
                if keep and not seen_end:
                    layout.special.append(start + i)
                    seen_end = seen_end or i > 0
                layout.word_of.append(None)
                continue
            layout.word_of.append(next((w for w, (s, e) in enumerate(spans) if s <= a < e), None))
    return layout

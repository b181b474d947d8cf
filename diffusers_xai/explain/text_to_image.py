r"""Per-token and per-word heat maps (DAAM) of stock text-to-image pipelines: SD/SDXL, SD3, Flux, PixArt."""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..capture import (
    AttentionCall,
    AttentionProbabilityCapture,
    LatentTraceCallback,
    SchedulerStepTrace,
    Trace,
    TraceConfig,
)
from .denoiser_call import StepSnapshot
from .prompt_tokens import PromptLayout, prompt_layout
from .randomization import SanityCheckResult, randomize_model
from .text_to_image_checks import token_integrated_gradients, word_deletion_checks, word_map_sanity

__all__ = ["TextToImageExplainer", "TextToImageExplanation", "explain_prompt"]


@dataclass
class TextToImageExplanation:
    r"""
    What [`TextToImageExplainer.attribute`] returns.

    Args:
        images: the pipeline's output images (as `output_type` asked).
        words (`list[str]`): the labels of `word_maps` (the prompt's words, then the start/end tokens on request).
        word_maps (`torch.Tensor`): `[W, H, W_img]` heat maps at image resolution, mean over layers, heads, steps.
        tokens (`list[str]`): the labels of `token_maps` (every text key that is not padding).
        token_maps (`torch.Tensor`): `[T, H, W_img]`.
        token_positions (`list[int]`): the key position of each entry of `token_maps`.
        per_step_word_maps (`torch.Tensor`): `[S, W, h, w]` at the map grid (before upsampling to the image).
        step_indices (`list[int]`): the explained steps.
        layers (`list[str]`): the attention modules whose image→text maps were aggregated.
        layout ([`PromptLayout`]): token ↔ word bookkeeping.
        trace ([`Trace`]): per-step latents (and $\hat{x}_0$ where recoverable) from [`LatentTraceCallback`], or
            from [`SchedulerStepTrace`] for pipelines without `callback_on_step_end` (PixArt).
        attributions (`dict`): filled by the optional checks (integrated gradients, faithfulness, sanity).
    """

    images: Any
    words: list[str]
    word_maps: torch.Tensor
    tokens: list[str]
    token_maps: torch.Tensor
    token_positions: list[int]
    per_step_word_maps: torch.Tensor
    step_indices: list[int]
    layers: list[str]
    layout: PromptLayout
    trace: Trace | None = None
    attributions: dict[str, Any] = field(default_factory=dict)

    def word_map(self, word: str) -> torch.Tensor:
        """The map of one word (by its text in the prompt)."""
        if word not in self.words:
            raise ValueError(f"{word!r} is not one of the explained words {self.words}.")
        return self.word_maps[self.words.index(word)]


def _grid(n_queries: int, aspect: float, layer: str) -> tuple[int, int]:
    """The (h, w) grid of a layer's image tokens: the factor pair of `n_queries` closest to the aspect ratio h / w."""
    grid = _factor_grid(n_queries, aspect)
    if grid is None:
        raise ValueError(f"Layer {layer!r} has {n_queries} image tokens, not a grid of aspect {aspect:.3f}.")
    return grid


@functools.lru_cache(maxsize=256)
def _factor_grid(n_queries: int, aspect: float) -> tuple[int, int] | None:
    pairs = [(h, n_queries // h) for h in range(1, n_queries + 1) if n_queries % h == 0]
    h, w = min(pairs, key=lambda p: abs(math.log(p[0] / p[1]) - math.log(aspect)))
    return None if max(h / w, w / h) > 4 * max(aspect, 1 / aspect) else (h, w)


class _MapAccumulator:
    """Streaming DAAM aggregation: each layer's head-mean map is upsampled to the finest grid and summed per step."""

    def __init__(self, aspect: float, steps: set[int] | None):
        self.aspect, self.steps = aspect, steps
        self.sums: dict[int, torch.Tensor] = {}
        self.counts: dict[int, int] = {}
        self.layers: dict[str, None] = {}
        self.grid: tuple[int, int] | None = None
        self.text_length: int | None = None

    def __call__(self, call: AttentionCall) -> None:
        probs = call.image_to_text
        if probs is None or (self.steps is not None and call.step_index not in self.steps):
            return
        m = probs.float().mean(dim=(0, 1))  # rows of the conditional half and heads -> [N, M]
        h, w = _grid(m.shape[0], self.aspect, call.layer)
        maps = m.T.reshape(1, m.shape[1], h, w)
        if self.grid is None or h * w > self.grid[0] * self.grid[1]:
            self._regrid((h, w))
        if (h, w) != self.grid:
            maps = F.interpolate(maps, size=self.grid, mode="bilinear", align_corners=False)
        s = call.step_index
        self.sums[s] = self.sums.get(s, 0) + maps[0]
        self.counts[s] = self.counts.get(s, 0) + 1
        self.layers[call.layer] = None
        self.text_length = m.shape[1]

    def _regrid(self, grid: tuple[int, int]) -> None:
        for s, v in self.sums.items():
            self.sums[s] = F.interpolate(v[None], size=grid, mode="bilinear", align_corners=False)[0]
        self.grid = grid

    def per_step(self) -> tuple[list[int], torch.Tensor]:
        if not self.sums:
            raise ValueError(
                "No image→text attention was recorded: check `steps=`/`layers=` (the denoiser has no text attention "
                "in the selected layers, or the selected steps were not run)."
            )
        steps = sorted(self.sums)
        return steps, torch.stack([self.sums[s] / self.counts[s] for s in steps])  # [S, M, h, w]


class TextToImageExplainer:
    r"""
    Per-token and per-word heat maps of a stock diffusers text-to-image pipeline, from one generation.

    DAAM (Tang et al., 2022, https://arxiv.org/abs/2210.04885): the probability each image token gives each text
    token, upsampled to a common grid and averaged over layers, heads and steps; sub-word maps are summed into word
    maps. Only the conditional half of a classifier-free-guidance batch is read (its rows are found by matching the
    prompt's own embeddings, which also skips Flux's separate negative pass). Departures from the paper: maps are
    means (not sums) over layers/heads/steps, and for joint attention (SD3, Flux double- and single-stream blocks)
    the image→text block of the softmax over the whole [image, text] sequence is used, so a map is the share of the
    image token's attention that goes to the word. Capture never changes the images (see
    [`AttentionProbabilityCapture`]).

    Args:
        pipeline: a `StableDiffusionPipeline`, `StableDiffusionXLPipeline`, `StableDiffusion3Pipeline`,
            `FluxPipeline` or `PixArtAlphaPipeline`/`PixArtSigmaPipeline` (or another pipeline with the same
            `encode_prompt`/`tokenizer` layout).
        layers (`list[str]`, *optional*): attention module names or patterns of the denoiser (default: all).

    Example:

    ```py
    >>> explainer = TextToImageExplainer(pipe)
    >>> res = explainer.attribute("a red cat on the grass", num_inference_steps=20)
    >>> res.word_map("cat").shape  # [height, width]
    ```
    """

    def __init__(self, pipeline, layers: Sequence[str] | None = None):
        self.pipeline = pipeline
        denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
        if denoiser is None or not hasattr(pipeline, "encode_prompt"):
            raise ValueError(
                f"{type(pipeline).__name__} is not a text-to-image pipeline with a `unet`/`transformer` and "
                "`encode_prompt`; pass e.g. a StableDiffusionPipeline, StableDiffusion3Pipeline or FluxPipeline."
            )
        self.denoiser = denoiser
        self.layers = list(layers) if layers is not None else None

    @property
    def denoiser_name(self) -> str:
        return "unet" if getattr(self.pipeline, "unet", None) is not None else "transformer"

    def attribute(
        self,
        prompt: str,
        steps: Literal["all"] | Sequence[int] = "all",
        include_special: bool = False,
        prompt_embeds: torch.Tensor | None = None,
        trace: bool | TraceConfig = True,
        integrated_gradients: bool = False,
        faithfulness: bool = False,
        sanity: bool = False,
        check_step: int | None = None,
        region: tuple[float, float, float, float] | None = None,
        n_ig_steps: int = 16,
        max_chunk_bytes: int = 2**26,
        **pipeline_kwargs,
    ) -> TextToImageExplanation:
        r"""
        Run the pipeline once with capture and return per-token and per-word maps (and the opt-in checks).

        Args:
            prompt (`str`): one prompt (one image per call).
            steps (`"all"` or `list[int]`, *optional*, defaults to `"all"`): 0-based denoising steps to aggregate;
                only these steps pay for the recomputation.
            include_special (`bool`, *optional*, defaults to `False`): also return maps of the start/end tokens.
            prompt_embeds (`torch.Tensor`, *optional*): conditioning to run instead of encoding `prompt` (e.g. with a
                word's embeddings zeroed); `prompt` still labels the tokens. Pass the pipeline's other embeddings
                (`pooled_prompt_embeds`, ...) in `pipeline_kwargs` as the pipeline requires.
            trace (`bool` or [`TraceConfig`], *optional*, defaults to `True`): record per-step latents through
                [`LatentTraceCallback`] (pipelines with `callback_on_step_end`) or [`SchedulerStepTrace`] (the
                others, e.g. PixArt).
            integrated_gradients (`bool`, *optional*): attributions of $\sum_{\text{region}}\hat{x}_0$ at
                `check_step` to every token embedding (captum IG, zero baseline), in
                `attributions["integrated_gradients"]` (`{"tokens": [M], "words": [W], "delta": ...}`).
            faithfulness (`bool`, *optional*): deletion of each word's top region vs random regions at `check_step`
                (`attributions["faithfulness"]`: word → [`FaithfulnessResult`]).
            sanity (`bool`, *optional*): the same generation with a re-initialised denoiser; SSIM/Spearman of the
                word maps (`attributions["sanity"]`: [`SanityCheckResult`]; low = the maps depend on the weights).
            check_step (`int`, *optional*): the step of the IG and deletion checks (default: the middle step).
            region (`tuple`, *optional*): (top, left, bottom, right) fractions of the image for IG (default: all).
            n_ig_steps (`int`, *optional*, defaults to 16): IG's Riemann steps.
            max_chunk_bytes (`int`, *optional*): memory bound of one chunk of recomputed attention scores.
            pipeline_kwargs: everything else goes to the pipeline call (`num_inference_steps`, `guidance_scale`,
                `generator`, `height`, `width`, `negative_prompt`, `max_sequence_length`, ...).

        Returns:
            [`TextToImageExplanation`].
        """
        self._check_call(prompt, steps, pipeline_kwargs)
        if check_step is None:
            check_step = pipeline_kwargs.get("num_inference_steps", 50) // 2
        generator = pipeline_kwargs.get("generator")
        state = generator.get_state() if isinstance(generator, torch.Generator) else None
        snapshot_step = check_step if (integrated_gradients or faithfulness) else None
        result, call = self._run(
            prompt, steps, include_special, prompt_embeds, trace, max_chunk_bytes, snapshot_step, pipeline_kwargs
        )
        if integrated_gradients:
            tokens, delta = token_integrated_gradients(call, region, n_ig_steps)
            words = torch.stack(
                [tokens[result.layout.word_positions(w)].sum() for w in range(len(result.layout.words))]
            )
            result.attributions["integrated_gradients"] = {"tokens": tokens, "words": words, "delta": delta}
        if faithfulness:
            result.attributions["faithfulness"] = word_deletion_checks(
                call, result.layout, result.per_step_word_maps.mean(0)
            )
        if sanity:
            result.attributions["sanity"] = self._sanity(result, prompt, steps, prompt_embeds, state, pipeline_kwargs)
        return result

    def _run(self, prompt, steps, include_special, prompt_embeds, trace, max_chunk_bytes, snapshot_step, kwargs):
        condition = prompt_embeds  # otherwise read from the pipeline's own encode_prompt call (_remember_encoding)
        aspect = self._aspect(kwargs)
        accumulate = _MapAccumulator(aspect, None if steps == "all" else set(steps))
        callback = self._trace_callback(trace, kwargs)
        step_trace = None  # pipelines without callback_on_step_end (PixArt): wrap the scheduler's step instead
        if callback is None and trace is not False:
            step_trace = SchedulerStepTrace(self.pipeline, _trace_config(trace), kwargs.get("num_inference_steps"))
        call = dict(kwargs)
        call |= {"prompt": None, "prompt_embeds": prompt_embeds} if prompt_embeds is not None else {"prompt": prompt}
        if callback is not None:
            call["callback_on_step_end"] = callback
        capture = AttentionProbabilityCapture(
            self.denoiser,
            accumulate,
            layers=self.layers,
            condition=condition,
            step_filter=None if steps == "all" else set(steps).__contains__,
            max_chunk_bytes=max_chunk_bytes,
            match_condition=True,
        )
        snapshot = StepSnapshot(self.denoiser, capture, snapshot_step, self.pipeline.scheduler, aspect)
        remember = self._remember_encoding(capture) if prompt_embeds is None else contextlib.nullcontext()
        traced = step_trace if step_trace is not None else contextlib.nullcontext()
        with remember, capture, snapshot if snapshot_step is not None else contextlib.nullcontext(), traced:
            output = self.pipeline(**call)
        if snapshot_step is not None and snapshot.call is None:
            raise ValueError(f"`check_step={snapshot_step}` was not run; pick a step below `num_inference_steps`.")
        step_indices, per_step = accumulate.per_step()
        layout = prompt_layout(self.pipeline, prompt, accumulate.text_length)
        trace_out = callback.trace if callback is not None else step_trace.trace if step_trace is not None else None
        result = self._explanation(output, layout, per_step, step_indices, list(accumulate.layers), include_special)
        result.trace = trace_out
        return result, snapshot.call

    def _sanity(self, result, prompt, steps, prompt_embeds, state, kwargs) -> SanityCheckResult:
        kwargs = dict(kwargs)
        if state is not None:
            kwargs["generator"] = torch.Generator().set_state(state)
        name = self.denoiser_name
        original = getattr(self.pipeline, name)
        setattr(self.pipeline, name, randomize_model(original))
        try:
            random_explainer = TextToImageExplainer(self.pipeline, self.layers)
            randomised, _ = random_explainer._run(prompt, steps, False, prompt_embeds, False, 2**26, None, kwargs)
        finally:
            setattr(self.pipeline, name, original)
        n = len(result.layout.words)
        return word_map_sanity(result.word_maps[:n], randomised.word_maps[:n])

    @contextlib.contextmanager
    def _remember_encoding(self, capture: AttentionProbabilityCapture):
        """Take the conditional embeddings from the pipeline's own (first) `encode_prompt` call.

        Every stock pipeline encodes the prompt once before its loop and returns the conditional embeddings first
        (Flux's true-CFG negative encoding comes second); reading them there instead of encoding the prompt again
        saves one text-encoder pass per explanation. The instance attribute is removed in `finally`.
        """
        pipe = self.pipeline
        own = pipe.__dict__.get("encode_prompt")
        original = pipe.encode_prompt

        def encode_prompt(*args, **kwargs):
            out = original(*args, **kwargs)
            if capture.condition is None:
                capture.condition = out[0].detach()
            return out

        pipe.__dict__["encode_prompt"] = encode_prompt
        try:
            yield
        finally:
            if own is None:
                pipe.__dict__.pop("encode_prompt", None)
            else:
                pipe.__dict__["encode_prompt"] = own

    def _check_call(self, prompt, steps, pipeline_kwargs) -> None:
        if not isinstance(prompt, str):
            raise ValueError(f"`prompt` must be one string (one image per call), got {type(prompt).__name__}.")
        if pipeline_kwargs.get("num_images_per_prompt", 1) != 1:
            raise ValueError("TextToImageExplainer explains one image per call; drop `num_images_per_prompt`.")
        if steps != "all" and (isinstance(steps, (str, int)) or any(not isinstance(s, int) or s < 0 for s in steps)):
            raise ValueError(f"`steps` must be 'all' or a list of non-negative step indices, got {steps!r}.")

    def _aspect(self, pipeline_kwargs) -> float:
        height, width = pipeline_kwargs.get("height"), pipeline_kwargs.get("width")
        if height is None or width is None:
            return 1.0  # every stock pipeline defaults to a square image
        return height / width

    def _trace_callback(self, trace, pipeline_kwargs) -> LatentTraceCallback | None:
        if trace is False or "callback_on_step_end" not in inspect.signature(self.pipeline.__call__).parameters:
            return None
        if "callback_on_step_end" in pipeline_kwargs:
            raise ValueError(
                "`callback_on_step_end` is taken by the latent trace; pass trace=False to use your own callback."
            )
        return LatentTraceCallback(_trace_config(trace), num_steps=pipeline_kwargs.get("num_inference_steps"))

    def _explanation(self, output, layout, per_step, step_indices, layers, include_special):
        images = getattr(output, "images", output[0] if isinstance(output, tuple) else output)
        size = _image_size(images)
        token_maps = per_step.mean(dim=0)  # [M, h, w]
        keep = [i for i, w in enumerate(layout.word_of) if w is not None] + layout.special
        keep = sorted(keep)
        groups = [layout.word_positions(w) for w in range(len(layout.words))]
        labels = list(layout.words)
        if include_special:
            groups += [[i] for i in layout.special]
            labels += [layout.tokens[i] for i in layout.special]
        missing = [labels[i] for i, g in enumerate(groups) if not g]
        if missing:
            raise ValueError(f"Words {missing} have no tokens in the truncated text; shorten the prompt.")
        per_step_words = torch.stack([per_step[:, g].sum(dim=1) for g in groups], dim=1)  # [S, W, h, w]
        word_maps = per_step_words.mean(dim=0)
        return TextToImageExplanation(
            images=images,
            words=labels,
            word_maps=_upsample(word_maps, size),
            tokens=[layout.tokens[i] for i in keep],
            token_maps=_upsample(token_maps[keep], size),
            token_positions=keep,
            per_step_word_maps=per_step_words,
            step_indices=step_indices,
            layers=layers,
            layout=layout,
        )


def _trace_config(trace: bool | TraceConfig) -> TraceConfig:
    return trace if isinstance(trace, TraceConfig) else TraceConfig(steps="all", max_bytes=2**28)


def _image_size(images) -> tuple[int, int]:
    if isinstance(images, torch.Tensor):
        return tuple(images.shape[-2:])
    first = images[0]
    if hasattr(first, "size") and not hasattr(first, "shape"):  # PIL
        return first.size[1], first.size[0]
    shape = getattr(images, "shape", None) or first.shape
    return (shape[1], shape[2]) if len(shape) == 4 else (shape[0], shape[1])


def _upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(maps[None].float(), size=size, mode="bilinear", align_corners=False)[0]


def explain_prompt(pipeline, prompt: str, **kwargs) -> TextToImageExplanation:
    """`TextToImageExplainer(pipeline).attribute(prompt, **kwargs)` in one call."""
    return TextToImageExplainer(pipeline).attribute(prompt, **kwargs)

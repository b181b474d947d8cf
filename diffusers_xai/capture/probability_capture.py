r"""Record image→text (and chosen self-attention) probabilities of any diffusers denoiser, one model call per step."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers.models.attention import AttentionModuleMixin
from diffusers.models.attention_processor import Attention

from .attention_spy import SeenAttention, seen_attention, spying_call
from .config import TraceConfig
from .hooks import resolve_module_names
from .processor import restore_processors
from .query_key import (
    SEEN_LAYOUTS,
    QueryKey,
    attention_query_key,
    check_processor_supported,
    chunked_attention_probabilities,
    seen_query_key,
)
from .trace import Trace, TraceBudget, TraceStep

__all__ = ["AttentionCall", "AttentionProbabilityCapture", "find_all_attention_modules"]

logger = logging.getLogger(__name__)


def find_all_attention_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every diffusers attention module (`Attention` and the `AttentionModuleMixin` ones such as `FluxAttention`)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (Attention, AttentionModuleMixin))}


@dataclass
class AttentionCall:
    r"""
    What the sink receives for one recorded attention call.

    Args:
        layer (`str`): dotted module name.
        step_index (`int`): 0-based index of the recorded denoiser call.
        timestep (`float`): the denoiser's `timestep` input.
        image_to_text (`torch.Tensor`, *optional*): `[b, heads, N_image, M_text]` (float32), `None` for
            self-attention-only layers.
        self_attention (`torch.Tensor`, *optional*): `[b, heads, n_queries, N_image]` for the chosen queries.
        rows (`torch.Tensor`): which rows of the denoiser batch these are (the conditional ones).
    """

    layer: str
    step_index: int
    timestep: float
    image_to_text: torch.Tensor | None
    self_attention: torch.Tensor | None
    rows: torch.Tensor


def _forwarded_to_original(name: str) -> property:
    """The attribute `name` of a wrapping processor read from and written to the processor it wraps (`original`)."""
    return property(
        lambda self: getattr(self.original, name, None), lambda self, value: setattr(self.original, name, value)
    )


class _ProbabilityProcessor:
    """Runs the original processor for the output and hands probabilities recomputed on the side to the capture."""

    def __init__(self, original, name: str, capture: AttentionProbabilityCapture, spying: Callable | None = None):
        self.original, self.name, self.capture, self.spying = original, name, capture, spying

    # `set_attention_backend` and the `attention_backend` context write these on the installed processor: forward
    # them so the original keeps computing the output with the user's backend.
    _attention_backend = _forwarded_to_original("_attention_backend")
    _parallel_config = _forwarded_to_original("_parallel_config")

    def _call(self, attn, *args, **kwargs):
        if not self.capture.recording or self._text_free(attn, args, kwargs):
            return self.original(attn, *args, **kwargs)
        if self.spying is not None:  # read Q and K where the processor hands them to the attention function
            with seen_attention() as seen:
                output = self.spying(self.original, attn, *args, **kwargs)
            context = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
            if len(seen) == 1 and seen[0] is not None:
                self.capture._record_seen(self.name, self.original, seen[0], context)
                return output
        else:
            output = self.original(attn, *args, **kwargs)
        bound = self._signature.bind(attn, *args, **kwargs)
        bound.apply_defaults()
        self.capture._record(self.name, attn, self.original, dict(list(bound.arguments.items())[1:]))
        return output

    def _text_free(self, attn, args, kwargs) -> bool:
        """A plain self-attention call (no text keys) when no self-attention rows are asked for: nothing to do."""
        if self.capture.self_attention_queries is not None or not isinstance(attn, Attention):
            return False
        return kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None) is None


@functools.cache
def _processor_class(original_cls: type) -> type:
    """A `_ProbabilityProcessor` subclass whose `__call__` shows the original's signature.

    diffusers' attention modules drop every keyword their processor's `__call__` does not name (they inspect its
    signature), so the wrapper must name exactly the original's parameters to receive the same inputs.
    """
    signature = inspect.signature(original_cls.__call__)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    __call__.__signature__ = signature
    params = list(signature.parameters.values())[1:]
    return type(
        f"Capturing{original_cls.__name__}",
        (_ProbabilityProcessor,),
        {"__call__": __call__, "_signature": inspect.Signature(params)},
    )


class AttentionProbabilityCapture:
    r"""
    Record attention probabilities of a diffusers denoiser (`UNet2DConditionModel`, `SD3Transformer2DModel`,
    `FluxTransformer2DModel`, `PixArtTransformer2DModel`, `DiTTransformer2DModel`, ...) while it runs unchanged.

    On enter every selected attention module gets a wrapper processor: the *original* processor still computes the
    output (bit-identical images, the user's attention backend kept), and Q/K are read where SD3's and Flux's joint
    processors hand them to the attention function (see `attention_spy`), or rebuilt on the side for the others (see
    [`attention_query_key`]), to compute $\mathrm{softmax}(QK^\top/\sqrt{d})$ in query chunks. A forward pre-hook on
    the denoiser counts steps and picks the batch rows to record: with `condition=` only rows whose
    `encoder_hidden_states` equal it (the conditional half of a classifier-free-guidance batch; calls with no such
    row, such as Flux's separate negative pass, are skipped). On exit, also after an exception, every processor is
    restored and every hook removed.

    Memory: by default only the image→text block is computed (`[b, heads, N, M]`); self-attention is computed only
    for the `self_attention_queries` (indices among the image tokens of each layer). With `trace_config=`, maps are
    also stored in a [`Trace`] under its `max_bytes` budget (a warning is logged when recording stops).

    Args:
        model (`torch.nn.Module`): the denoiser.
        sink (`Callable[[AttentionCall], None]`, *optional*): receives every recorded call (streaming aggregation).
        layers (`list[str]`, *optional*): module names or `fnmatch` patterns (default: all attention modules).
        condition (`torch.Tensor`, *optional*): the conditional text embeddings `[1 or B, M, D]` given to the
            denoiser; `None` records every row.
        image_to_text (`bool`, *optional*, defaults to `True`): compute the image→text block where a call has text.
        self_attention_queries (`Sequence[int]` or `Callable[[int], Sequence[int]]`, *optional*): image-token
            indices whose self-attention rows to compute (a callable gets the layer's image-token count).
        trace_config ([`TraceConfig`], *optional*): also store heads-reduced maps in `self.trace` (its `steps`,
            `head_reduction`, `dtype`, `device` and `max_bytes` apply; the image→text block is stored, or the chosen
            self-attention rows for layers without text).
        num_steps (`int`, *optional*): denoising steps of the run, to resolve `trace_config.steps`.
        step_filter (`Callable[[int], bool]`, *optional*): record only the steps it accepts (others cost nothing).
        max_chunk_bytes (`int`, *optional*, defaults to 64 MiB): bound of one chunk of attention scores.
        match_condition (`bool`, *optional*): record only rows matching `condition` even though it is set later
            (before the first denoiser call, e.g. from the pipeline's `encode_prompt`); defaults to
            `condition is not None`.

    Raises:
        UnsupportedAttentionProcessorError: on enter, naming the first module whose processor we cannot recompute.

    Example:

    ```py
    >>> calls = []
    >>> with AttentionProbabilityCapture(pipe.transformer, sink=calls.append):
    ...     pipe("a red cat", num_inference_steps=2)
    >>> calls[0].image_to_text.shape  # [batch, heads, image tokens, text tokens]
    ```
    """

    def __init__(
        self,
        model: torch.nn.Module,
        sink: Callable[[AttentionCall], None] | None = None,
        layers: Sequence[str] | None = None,
        condition: torch.Tensor | None = None,
        image_to_text: bool = True,
        self_attention_queries: Sequence[int] | Callable[[int], Sequence[int]] | None = None,
        trace_config: TraceConfig | None = None,
        num_steps: int | None = None,
        step_filter: Callable[[int], bool] | None = None,
        max_chunk_bytes: int = 2**26,
        match_condition: bool | None = None,
    ):
        modules = find_all_attention_modules(model)
        if not modules:
            raise ValueError(f"{type(model).__name__} has no diffusers attention modules to capture.")
        names = resolve_module_names(modules, layers, "attention layer") if layers else list(modules)
        if max_chunk_bytes <= 0:
            raise ValueError(f"`max_chunk_bytes` must be positive, got {max_chunk_bytes}.")
        if not image_to_text and self_attention_queries is None:
            raise ValueError("Nothing to record: set `image_to_text=True` or give `self_attention_queries=`.")
        self.model, self.sink, self.condition = model, sink, condition
        self.match_condition = condition is not None if match_condition is None else match_condition
        self.modules = {n: modules[n] for n in names}
        self.image_to_text, self.self_attention_queries = image_to_text, self_attention_queries
        self.max_chunk_bytes, self.step_filter = max_chunk_bytes, step_filter
        self.trace = Trace(config=trace_config, num_inference_steps=num_steps) if trace_config is not None else None
        self._budget = TraceBudget(self.trace) if self.trace is not None else None
        self._kept_steps = trace_config.step_indices(num_steps) if trace_config is not None else None
        self._forward_signature = inspect.signature(model.forward)
        self.step_index, self.timestep, self.rows, self.text_length = -1, None, None, None
        self._originals: dict[str, object] = {}
        self._matched: tuple | None = None  # (context, its version, condition, its version) of the last row match
        self._matched_rows: torch.Tensor | None = None
        self._handles: list = []
        self._warned = False

    @property
    def recording(self) -> bool:
        return self.rows is not None

    # ---- per model call ----
    def _pre_hook(self, module, args, kwargs):
        bound = self._forward_signature.bind_partial(*args, **kwargs).arguments
        context = bound.get("encoder_hidden_states")
        sample = bound.get("sample", bound.get("hidden_states"))
        timestep = bound.get("timestep")
        self.rows = self._conditional_rows(context, sample)
        if self.rows is None:
            return
        self.step_index += 1
        if self.step_filter is not None and not self.step_filter(self.step_index):
            self.rows = None
            return
        self.timestep = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else timestep
        self.text_length = None if context is None else context.shape[1]
        kept = self.trace is not None and (self._kept_steps is None or self.step_index in self._kept_steps)
        if kept and not self.trace.truncated:
            self.trace.steps.append(TraceStep(step_index=self.step_index, timestep=int(round(self.timestep or 0))))

    def _post_hook(self, module, args, kwargs, output):
        self.rows = None

    def _conditional_rows(self, context: torch.Tensor | None, sample) -> torch.Tensor | None:
        if self.condition is None and self.match_condition:
            raise ValueError(
                "The denoiser ran before its conditioning was known: set `condition=` before the first call."
            )
        if self.condition is None:
            batch = next((x.shape[0] for x in (context, sample) if isinstance(x, torch.Tensor)), 1)
            return torch.arange(batch)
        if context is None:
            return None
        # pipelines hand the same (unchanged) embeddings tensor to every step: match its rows once
        key = (context, _version(context), self.condition, _version(self.condition))
        cached = self._matched is not None and None not in key[1::2] and key[1::2] == self._matched[1::2]
        if cached and key[0] is self._matched[0] and key[2] is self._matched[2]:
            return self._matched_rows
        self._matched, self._matched_rows = key, self._match_rows(context)
        return self._matched_rows

    def _match_rows(self, context: torch.Tensor) -> torch.Tensor | None:
        cond = self.condition.to(device=context.device, dtype=context.dtype)
        if cond.shape[1:] != context.shape[1:]:
            return None
        # a tolerance, not torch.equal: the same prompt encoded with autograd on differs in the last bit on CPU
        match = [i for i in range(context.shape[0]) if any(_same(context[i], c) for c in cond)]
        return torch.tensor(match, dtype=torch.long) if match else None

    # ---- per attention call ----
    def _record(self, name: str, attn, processor, inputs: dict) -> None:
        """Rebuild Q and K from the processor's inputs (processors whose attention call cannot be spied on)."""
        rows = self.rows
        with torch.no_grad():
            sel = {k: _select_rows(v, rows, k) for k, v in inputs.items()}
            qk = attention_query_key(attn, processor, text_length=self.text_length, **sel)
        self._record_query_key(name, qk)

    def _record_seen(self, name: str, processor, seen: SeenAttention, context: torch.Tensor | None) -> None:
        """Q and K exactly as the processor handed them to SDPA / the dispatcher (see `attention_spy`)."""
        with torch.no_grad():
            qk = seen_query_key(processor, seen, context, self.text_length, self.rows)
        self._record_query_key(name, qk)

    def _record_query_key(self, name: str, qk: QueryKey) -> None:
        with torch.no_grad():
            to_text = None
            if self.image_to_text and qk.text_keys is not None:
                to_text = chunked_attention_probabilities(qk, "image", "text", self.max_chunk_bytes)
            to_self = None
            if self.self_attention_queries is not None and len(range(qk.key.shape[2])[qk.image_keys]):
                n_image = len(range(qk.query.shape[2])[qk.image_queries])
                wanted = self.self_attention_queries
                wanted = wanted(n_image) if callable(wanted) else wanted
                to_self = chunked_attention_probabilities(
                    qk, torch.as_tensor(list(wanted), dtype=torch.long), "image", self.max_chunk_bytes
                )
        if to_text is None and to_self is None:
            return
        call = AttentionCall(name, self.step_index, self.timestep, to_text, to_self, self.rows)
        if self.sink is not None:
            self.sink(call)
        if self.trace is not None:
            self._store(call)

    def _store(self, call: AttentionCall) -> None:
        trace, config = self.trace, self.trace.config
        if trace.truncated or not trace.steps or trace.steps[-1].step_index != call.step_index:
            return
        probs = call.image_to_text if call.image_to_text is not None else call.self_attention
        if config.head_reduction == "mean":
            probs = probs.mean(dim=1)
        stored = probs.detach().to(device=config.device, dtype=config.dtype)
        if not self._budget.admit(stored):
            if not self._warned:
                logger.warning(
                    "Attention capture reached TraceConfig.max_bytes=%d at step %d (layer %s); later maps are not "
                    "stored in the trace. Raise max_bytes, select fewer `layers=` or use head_reduction='mean'.",
                    config.max_bytes,
                    call.step_index,
                    call.layer,
                )
                self._warned = True
            return
        self._budget.release(trace.steps[-1].attentions.get(call.layer))
        trace.steps[-1].attentions[call.layer] = stored

    # ---- install / restore ----
    def __enter__(self) -> AttentionProbabilityCapture:
        try:
            for name, module in self.modules.items():
                check_processor_supported(name, module, module.get_processor())
            self._handles.append(self.model.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
            self._handles.append(self.model.register_forward_hook(self._post_hook, with_kwargs=True, always_call=True))
            spies: dict[type, Callable | None] = {}
            for name, module in self.modules.items():
                original = module.get_processor()
                self._originals[name] = original
                if type(original) not in spies:  # one globals snapshot per processor class and capture
                    spies[type(original)] = spying_call(type(original)) if type(original) in SEEN_LAYOUTS else None
                spying = spies[type(original)]
                module.set_processor(_processor_class(type(original))(original, name, self, spying))
        except BaseException:
            self.restore()
            raise
        return self

    def restore(self) -> None:
        """Put every original processor back and remove every hook (idempotent)."""
        restore_processors(self.modules, self._originals, self._handles)
        self.rows, self._matched, self._matched_rows = None, None, None

    def __exit__(self, *exc) -> None:
        self.restore()


def _version(tensor: torch.Tensor) -> int | None:
    """The in-place version counter (`None` for inference-mode tensors, which have none: no caching then)."""
    try:
        return tensor._version
    except RuntimeError:
        return None


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5))


def _select_rows(value, rows: torch.Tensor, name: str):
    """The recorded batch rows of one processor input (rotary embeddings and timestep-free inputs pass through)."""
    if name == "image_rotary_emb" or not isinstance(value, torch.Tensor) or value.ndim == 0:
        return value
    if value.shape[0] == 1 and name == "attention_mask":
        return value
    return value[rows.to(value.device)]

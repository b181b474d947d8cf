r"""Attention maps per layer, head and step, aggregated and upsampled; per-token cross-attention maps (DAAM)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from ..capture import Trace, TraceConfig, TraceRecorder, find_attention_modules, resolve_module_names
from .base import DenoiserExplainer, ExplanationResult, StepInput, progress, resolve_steps

__all__ = ["AttentionExplainer", "attention_maps", "probabilities_to_maps"]

AttentionKind = Literal["self", "cross"]


def _layer_resolution(num_queries: int, image_size: tuple[int, int], layer: str) -> tuple[int, int]:
    """The (h, w) grid of a layer's `num_queries` query tokens, assuming the image's aspect ratio."""
    height, width = image_size
    scale = math.sqrt(height * width / num_queries)
    h, w = round(height / scale), round(width / scale)
    if h * w != num_queries:
        raise ValueError(
            f"Layer {layer!r} has {num_queries} query tokens, which is not a downscaled {height}x{width} grid; pass "
            "the `image_size` the model was run at."
        )
    return h, w


def probabilities_to_maps(
    probs: torch.Tensor,
    kind: AttentionKind,
    image_size: tuple[int, int],
    layer: str = "",
    query: tuple[int, int] | None = None,
    token_indices: Sequence[int] | None = None,
) -> torch.Tensor:
    r"""
    Turn attention probabilities $P$ `[B, (heads,) Q, K]` of one layer into spatial maps `[B, heads, N, h, w]`.

    - `kind="self"`, `query=None`: the attention each position *receives*, $\frac{1}{Q}\sum_q P_{qk}$ (N = 1).
    - `kind="self"`, `query=(i, j)` (image pixel coordinates): where that pixel looks, $P_{q(i,j),k}$ (N = 1).
    - `kind="cross"`: DAAM's per-token map, $P_{q,k}$ over the queries $q$ for each token $k$ (N = tokens, or the
      selected `token_indices`).
    """
    if probs.ndim == 3:
        probs = probs.unsqueeze(1)
    if probs.ndim != 4:
        raise ValueError(f"Attention probabilities must be [B, (heads,) Q, K], got shape {tuple(probs.shape)}.")
    b, heads, q, k = probs.shape
    h, w = _layer_resolution(q, image_size, layer)
    probs = probs.float()
    if kind == "self":
        if q != k:
            raise ValueError(f"Layer {layer!r} is a cross-attention layer ({q} queries, {k} keys); use kind='cross'.")
        if query is None:
            m = probs.mean(dim=2)
        else:
            i, j = query
            if not (0 <= i < image_size[0] and 0 <= j < image_size[1]):
                raise ValueError(f"`query` {query} is outside the {image_size[0]}x{image_size[1]} image.")
            m = probs[:, :, (i * h // image_size[0]) * w + (j * w // image_size[1]), :]
        return m.reshape(b, heads, 1, h, w)
    if kind != "cross":
        raise ValueError(f"`kind` must be 'self' or 'cross', got {kind!r}.")
    if token_indices is not None:
        bad = [t for t in token_indices if not -k <= t < k]
        if bad:
            raise ValueError(f"Token indices {bad} are out of range for {k} tokens.")
        probs = probs[..., list(token_indices)]
    return probs.permute(0, 1, 3, 2).reshape(b, heads, probs.shape[-1], h, w)


def _select_heads(maps: torch.Tensor, heads) -> torch.Tensor:
    if heads == "mean":
        return maps.mean(dim=1, keepdim=True)
    if heads is None:
        return maps
    if isinstance(heads, int):
        heads = [heads]
    n = maps.shape[1]
    bad = [h for h in heads if not -n <= h < n]
    if bad:
        raise ValueError(
            f"Heads {bad} do not exist: the layer has {n} heads (or 1 if they were averaged in the trace)."
        )
    return maps[:, list(heads)]


def attention_maps(
    trace: Trace,
    image_size: tuple[int, int] | None = None,
    layers: Sequence[str] | None = None,
    kind: AttentionKind = "self",
    heads: Literal["mean"] | int | Sequence[int] | None = "mean",
    query: tuple[int, int] | None = None,
    token_indices: Sequence[int] | None = None,
    timesteps: Sequence[int] | None = None,
) -> ExplanationResult:
    r"""
    Attention maps from the attention probabilities recorded in a [`Trace`] (no model needed).

    Each layer's maps (see [`probabilities_to_maps`]) are upsampled bilinearly to `image_size` and averaged over
    heads and layers per step (DAAM sums them; the mean has the same shape). Without a model the kind of a layer is
    read from its shape: self-attention has as many keys as queries. Use [`AttentionExplainer`] to select layers
    by the model's own `is_cross_attention` flag.

    Args:
        trace ([`Trace`]): recorded with `TraceConfig(attention=True)`.
        image_size (`tuple[int, int]`, *optional*): defaults to the spatial size of the recorded latents.
        layers (`list[str]`, *optional*): names or patterns; default every recorded layer of the right kind.
        kind (`"self"` or `"cross"`, *optional*, defaults to `"self"`).
        heads (`"mean"`, `int`, `list[int]` or `None`): average, select or keep the heads in `per_layer`.
        query (`tuple[int, int]`, *optional*): a pixel whose self-attention to show.
        token_indices (`list[int]`, *optional*): the tokens whose cross-attention to show.
        timesteps (`list[int]`, *optional*): restrict to these recorded timesteps.

    Returns:
        [`ExplanationResult`] with `maps` `[K, B, N, H, W]` (N = 1, or tokens for cross-attention),
        `metadata["aggregated"]` `[B, N, H, W]` (mean over steps), `metadata["per_layer"]`
        (`name → [K, B, heads, N, h, w]`), `metadata["layers"]`, `metadata["kind"]`.
    """
    recorded = trace.attention_layers
    if not recorded:
        raise ValueError("The trace holds no attention maps; record them with TraceConfig(attention=True).")
    if image_size is None:
        if not trace.steps or trace.steps[0].latents is None:
            raise ValueError("Pass `image_size=`: the trace holds no latents to read it from.")
        image_size = tuple(trace.steps[0].latents.shape[-2:])
    names = resolve_module_names(recorded, layers, "recorded attention layer") if layers else recorded
    steps = [s for s in trace.steps if s.attentions]
    if timesteps is not None:
        wanted = set(int(t) for t in timesteps)
        missing = wanted - {s.timestep for s in steps}
        if missing:
            raise ValueError(
                f"No attention recorded at timesteps {sorted(missing)}; recorded: {[s.timestep for s in steps]}."
            )
        steps = [s for s in steps if s.timestep in wanted]

    def is_kind(name: str) -> bool:
        probs = next(s.attentions[name] for s in steps if name in s.attentions)
        return (probs.shape[-1] == probs.shape[-2]) == (kind == "self")

    if layers is None:
        names = [n for n in names if is_kind(n)]
    if not names:
        raise ValueError(
            f"The trace holds no {kind}-attention layers (recorded: {recorded}); "
            + ("cross-attention needs a conditional model such as UNet2DConditionModel." if kind == "cross" else "")
        )
    return _aggregate(
        {n: [s.attentions.get(n) for s in steps] for n in names},
        kind,
        image_size,
        heads,
        query,
        token_indices,
        steps,
    )


def _aggregate(probs_by_layer, kind, image_size, heads, query, token_indices, steps):
    """The maps of `probs_by_layer` (one list a layer, one entry a step of `steps`) as one [`ExplanationResult`]."""
    per_layer: dict[str, torch.Tensor] = {}
    upsampled = []
    for name, per_step in probs_by_layer.items():
        if any(p is None for p in per_step):
            raise ValueError(f"Layer {name!r} was not recorded at every selected step.")
        maps = torch.stack(
            [
                _select_heads(probabilities_to_maps(p, kind, image_size, name, query, token_indices), heads)
                for p in per_step
            ]
        )  # [K, B, heads, N, h, w]
        per_layer[name] = maps
        k, b, nh, n, h, w = maps.shape
        up = F.interpolate(
            maps.mean(dim=2).reshape(k * b, n, h, w), size=image_size, mode="bilinear", align_corners=False
        )
        upsampled.append(up.reshape(k, b, n, *image_size))
    maps = torch.stack(upsampled).mean(dim=0)
    return ExplanationResult(
        method="attention",
        attributions=maps,
        maps=maps,
        timesteps=[s.timestep for s in steps],
        step_indices=[s.step_index for s in steps],
        metadata={"kind": kind, "layers": list(per_layer), "per_layer": per_layer, "aggregated": maps.mean(dim=0)},
        signed=False,  # attention weights are >= 0 and claim "attended to", not a direction of the target
    )


class AttentionExplainer(DenoiserExplainer):
    r"""
    Attention maps of a diffusers denoiser: per layer, per head, per step, aggregated and upsampled to the image.

    Reads the probabilities from a [`Trace`] recorded with `TraceConfig(attention=True)`; when the trace has none
    (or a tensor $x_t$ is given), it recomputes them with one forward pass per explained step under a
    [`TraceRecorder`] (no gradients, every processor restored afterwards). For a `UNet2DConditionModel`,
    `kind="cross"` gives DAAM's per-token heat maps: the cross-attention of every spatial position to each text
    token, upsampled and averaged over layers, heads and steps (Tang et al., 2022,
    https://arxiv.org/abs/2210.04885).

    Args:
        model (`DiffusionPipeline` or `torch.nn.Module`): a pipeline or a denoiser.
        layers (`list[str]`, *optional*): `Attention` module names or patterns (default: all of `kind`).
        kind (`"self"` or `"cross"`, *optional*, defaults to `"self"`).

    Example (DAAM):

    ```py
    >>> daam = AttentionExplainer(unet, kind="cross")
    >>> res = daam.attribute(latents, timesteps=[981, 501], encoder_hidden_states=text_embeddings, tokens=tokens)
    >>> res.metadata["aggregated"].shape  # [B, tokens, H, W]
    ```
    """

    method = "attention"

    def __init__(self, model, layers: str | Sequence[str] | None = None, kind: AttentionKind = "self", scheduler=None):
        super().__init__(model, scheduler, None)
        if kind not in ("self", "cross"):
            raise ValueError(f"`kind` must be 'self' or 'cross', got {kind!r}.")
        modules = find_attention_modules(self.unet)
        if not modules:
            raise ValueError(f"{type(self.unet).__name__} has no diffusers `Attention` modules to read maps from.")
        of_kind = {n: m for n, m in modules.items() if bool(m.is_cross_attention) == (kind == "cross")}
        if not of_kind:
            raise ValueError(
                f"{type(self.unet).__name__} has no {kind}-attention layers"
                + (
                    ": cross-attention maps need a conditional model such as UNet2DConditionModel."
                    if kind == "cross"
                    else "."
                )
            )
        self.kind = kind
        self._read_trace = True
        if layers is None:
            self.layers = list(of_kind)
        else:
            self.layers = resolve_module_names(
                modules, [layers] if isinstance(layers, str) else list(layers), "attention layer"
            )
            wrong = [n for n in self.layers if n not in of_kind]
            if wrong:
                raise ValueError(
                    f"Layers {wrong} are not {kind}-attention layers; {kind}-attention layers: {list(of_kind)}."
                )

    def attribute(
        self,
        inputs,
        timesteps: int | Sequence[int] | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        heads: Literal["mean"] | int | Sequence[int] | None = "mean",
        query: tuple[int, int] | None = None,
        token_indices: Sequence[int] | None = None,
        tokens: Sequence[str] | None = None,
    ) -> ExplanationResult:
        r"""
        Args:
            inputs ([`Trace`] or `torch.Tensor`): a trace or a batch $x_t$ `[B, C, H, W]`.
            timesteps (`int` or `list[int]`, *optional*): default every recorded step (required for a tensor).
            encoder_hidden_states (`torch.Tensor`, *optional*): the text conditioning (needed to recompute
                cross-attention).
            class_labels (`torch.Tensor`, *optional*): for class-conditional UNets.
            heads, query, token_indices: see [`attention_maps`].
            tokens (`list[str]`, *optional*): token strings, stored in `metadata["tokens"]` for plotting.

        Returns:
            [`ExplanationResult`] with `maps` `[K, B, N, H, W]` (see [`attention_maps`]).
        """
        if self.kind == "cross" and encoder_hidden_states is None and not isinstance(inputs, Trace):
            raise ValueError("Cross-attention maps need `encoder_hidden_states=` (the text embeddings).")
        steps = resolve_steps(inputs, timesteps, self.scheduler)
        from_trace = isinstance(inputs, Trace) and self._read_trace
        if from_trace and all(all(n in s.attentions for n in self.layers) for s in _trace_steps(inputs, steps)):
            recorded = _trace_steps(inputs, steps)
            probs = {n: [s.attentions[n] for s in recorded] for n in self.layers}
        else:
            if self.kind == "cross" and encoder_hidden_states is None:
                raise ValueError(
                    "The trace holds no cross-attention for these layers; pass `encoder_hidden_states=` to recompute."
                )
            probs = self._recompute(steps, encoder_hidden_states, class_labels)
        image_size = tuple(steps[0].sample.shape[-2:])
        result = _aggregate(
            probs,
            self.kind,
            image_size,
            heads,
            query,
            token_indices,
            steps,
        )
        if tokens is not None:
            result.metadata["tokens"] = (
                [tokens[i] for i in token_indices] if token_indices is not None else list(tokens)
            )
        return result

    def with_model(self, unet: torch.nn.Module) -> AttentionExplainer:
        """A copy bound to another denoiser; it always recomputes the maps (a trace holds the original model's)."""
        clone = super().with_model(unet)
        clone._read_trace = False
        return clone

    def _recompute(self, steps: list[StepInput], encoder_hidden_states, class_labels) -> dict[str, list[torch.Tensor]]:
        config = TraceConfig(
            steps="all",
            latents=False,
            pred_original_sample=False,
            attention=True,
            attention_layers=self.layers,
            head_reduction="none",
            dtype=torch.float32,
            max_bytes=2**40,
        )
        with TraceRecorder(self.unet, config) as recorder, torch.no_grad():
            for step in progress(steps, desc="attention"):
                x = step.sample.to(self.device, self.dtype)
                cond = self._conditioning(encoder_hidden_states, class_labels, x.shape[0])
                self.unet(x, step.timestep, **cond)
        return {n: [s.attentions[n] for s in recorder.trace.steps] for n in self.layers}


def _trace_steps(trace: Trace, steps: list[StepInput]):
    by_index = {s.step_index: s for s in trace.steps}
    return [by_index[s.step_index] for s in steps]

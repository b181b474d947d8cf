"""The per-step record of one sampling run: latents, predicted x0, model outputs, attention, activations."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..utils.io import atomic_path
from .config import TraceConfig

__all__ = ["Trace", "TraceBudget", "TraceStep"]

_TENSOR_FIELDS = ("latents", "pred_original_sample", "model_output")


def tensor_nbytes(tensor: torch.Tensor | None) -> int:
    """Bytes of a stored tensor (0 for `None`)."""
    return 0 if tensor is None else tensor.numel() * tensor.element_size()


@dataclass
class TraceStep:
    r"""
    What was recorded at one denoising step.

    Args:
        step_index (`int`): 0-based index in the sampling loop.
        timestep (`int`): the scheduler timestep $t$ of that step.
        latents (`torch.Tensor`, *optional*): $x_t$, the input of the step, `[B, C, H, W]`.
        pred_original_sample (`torch.Tensor`, *optional*): $\hat{x}_0(x_t, t)$, `[B, C, H, W]`.
        model_output (`torch.Tensor`, *optional*): the raw denoiser output, `[B, C, H, W]`.
        attentions (`dict[str, torch.Tensor]`): attention probabilities per `Attention` module name,
            `[B, Q, K]` (heads averaged) or `[B, heads, Q, K]`.
        activations (`dict[str, torch.Tensor]`): forward outputs of the traced modules.
    """

    step_index: int
    timestep: int
    latents: torch.Tensor | None = None
    pred_original_sample: torch.Tensor | None = None
    model_output: torch.Tensor | None = None
    attentions: dict[str, torch.Tensor] = field(default_factory=dict)
    activations: dict[str, torch.Tensor] = field(default_factory=dict)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {k: getattr(self, k) for k in _TENSOR_FIELDS if getattr(self, k) is not None}
        out.update({f"attentions/{k}": v for k, v in self.attentions.items()})
        out.update({f"activations/{k}": v for k, v in self.activations.items()})
        return out

    @property
    def nbytes(self) -> int:
        return sum(tensor_nbytes(t) for t in self.tensors().values())


@dataclass
class Trace:
    """
    The record of one sampling run, step by step (see [`TraceConfig`] for what is kept).

    `trace.steps` lists the recorded [`TraceStep`]s in loop order; `stack("latents")` gives a
    `[S, B, C, H, W]` tensor over them, `attention(name)` the maps of one layer, and `save`/`load` round-trip
    the whole trace through a safetensors file (no pickle). `guidance_scale` is the classifier-free guidance scale
    the run was sampled with (our pipelines record it; 1 = none), which [`Explainer`] then explains by default.
    """

    config: TraceConfig
    steps: list[TraceStep] = field(default_factory=list)
    num_inference_steps: int | None = None
    truncated: bool = False
    guidance_scale: float = 1.0

    @property
    def nbytes(self) -> int:
        """Bytes held by the recorded tensors."""
        return sum(s.nbytes for s in self.steps)

    @property
    def step_indices(self) -> list[int]:
        return [s.step_index for s in self.steps]

    @property
    def timesteps(self) -> torch.Tensor:
        return torch.tensor([s.timestep for s in self.steps], dtype=torch.long)

    @property
    def attention_layers(self) -> list[str]:
        names: dict[str, None] = {}
        for s in self.steps:
            names.update(dict.fromkeys(s.attentions))
        return list(names)

    def __len__(self) -> int:
        return len(self.steps)

    def step(self, step_index: int) -> TraceStep:
        for s in self.steps:
            if s.step_index == step_index:
                return s
        raise KeyError(f"Step {step_index} was not recorded; recorded steps are {self.step_indices}.")

    def stack(self, name: str) -> torch.Tensor:
        """Stack one per-step tensor (`"latents"`, `"pred_original_sample"`, `"model_output"`) into `[S, ...]`."""
        if name not in _TENSOR_FIELDS:
            raise ValueError(f"Unknown trace field {name!r}; choose one of {_TENSOR_FIELDS}.")
        tensors = [getattr(s, name) for s in self.steps if getattr(s, name) is not None]
        if not tensors:
            raise ValueError(f"The trace holds no {name!r}: enable it in the TraceConfig.")
        return torch.stack(tensors)

    def attention(self, layer: str) -> torch.Tensor:
        """Attention probabilities of one layer over the recorded steps, `[S, B, (heads,) Q, K]`."""
        maps = [s.attentions[layer] for s in self.steps if layer in s.attentions]
        if not maps:
            raise ValueError(f"No attention recorded for layer {layer!r}; recorded layers: {self.attention_layers}.")
        return torch.stack(maps)

    # ---- persistence (safetensors + JSON metadata, never pickle) ----
    def save(self, path: str | os.PathLike) -> Path:
        """Write the trace to one `.safetensors` file, atomically (temp file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors, index = {}, []
        for s in self.steps:
            index.append({"step_index": s.step_index, "timestep": int(s.timestep)})
            for key, value in s.tensors().items():
                tensors[f"{s.step_index:06d}/{key}"] = value.contiguous()
        meta = {
            "steps": json.dumps(index),
            "num_inference_steps": json.dumps(self.num_inference_steps),
            "truncated": json.dumps(self.truncated),
            "guidance_scale": json.dumps(self.guidance_scale),
            "config": json.dumps(
                {
                    k: (str(v).replace("torch.", "") if isinstance(v, torch.dtype) else v)
                    for k, v in self.config.__dict__.items()
                }
            ),
        }
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trace:
        from safetensors import SafetensorError, safe_open

        if not os.path.isfile(path):
            raise ValueError(f"Trace file {str(path)!r} does not exist; write one with `Trace.save`.")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata()
        except SafetensorError as err:
            raise ValueError(
                f"{str(path)!r} is not a safetensors file ({err}); load a file written by `Trace.save`."
            ) from err
        if not meta or not {"config", "steps", "num_inference_steps", "truncated"} <= set(meta):
            raise ValueError(
                f"{str(path)!r} is a safetensors file but not a diffusers-xai trace (its metadata has no trace "
                "config/steps, e.g. model weights); load a file written by `Trace.save`."
            )
        tensors = load_file(str(path))
        cfg = json.loads(meta["config"])
        cfg["dtype"] = getattr(torch, cfg["dtype"])
        trace = cls(
            config=TraceConfig(**cfg),
            num_inference_steps=json.loads(meta["num_inference_steps"]),
            truncated=json.loads(meta["truncated"]),
            guidance_scale=json.loads(meta.get("guidance_scale", "1.0")),  # traces saved before it was recorded
        )
        for entry in json.loads(meta["steps"]):
            step = TraceStep(step_index=entry["step_index"], timestep=entry["timestep"])
            prefix = f"{step.step_index:06d}/"
            for key, value in tensors.items():
                if not key.startswith(prefix):
                    continue
                name = key[len(prefix) :]
                if name.startswith("attentions/"):
                    step.attentions[name[len("attentions/") :]] = value
                elif name.startswith("activations/"):
                    step.activations[name[len("activations/") :]] = value
                else:
                    setattr(step, name, value)
            trace.steps.append(step)
        return trace


class TraceBudget:
    r"""
    The bytes a writer has stored in its own [`Trace`], held against `TraceConfig.max_bytes`.

    Every writer (the recorder, the latent callback, the attention capture) owns its trace and stores into it only
    through its budget, so `used` equals `trace.nbytes` without summing every stored tensor again at each store: that
    sum made recording S steps cost O(S²) (1,000 steps of one tensor each re-read half a million tensors).

    Args:
        trace ([`Trace`]): the trace written to; `used` starts at what it already holds.
    """

    def __init__(self, trace: Trace):
        self.trace = trace
        self.used = trace.nbytes

    def admit(self, tensor: torch.Tensor) -> bool:
        """Count `tensor` in and return `True` if it fits; else mark the trace truncated and return `False`."""
        size = tensor_nbytes(tensor)
        if self.used + size > self.trace.config.max_bytes:
            self.trace.truncated = True
            return False
        self.used += size
        return True

    def release(self, tensor: torch.Tensor | None) -> None:
        """Count out a stored tensor that is being replaced or dropped."""
        self.used -= tensor_nbytes(tensor)

r"""One conditional denoiser call of a stock pipeline, replayable: the basis of attributions and deletion checks."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch

from ..pipelines import predict_original_sample

__all__ = ["DenoiserCall", "StepSnapshot"]


def _select(value, rows: torch.Tensor, batch: int):
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return value[rows.to(value.device)].detach().clone()
    if isinstance(value, dict):
        return {k: _select(v, rows, batch) for k, v in value.items()}
    return value


def _repeat(value, n: int):
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == 1:
        return value.expand(n, *value.shape[1:])
    if isinstance(value, dict):
        return {k: _repeat(v, n) for k, v in value.items()}
    return value


@dataclass
class DenoiserCall:
    r"""
    The keyword arguments of the denoiser's call at one step, conditional row only, and how to turn its output into
    $\hat{x}_0$. `sample_key` names $x_t$ (`"sample"` for UNets, `"hidden_states"` for transformers); Flux's packed
    `[1, N, C]` latents are shown to callers as an image-like `[1, C, h, w]` grid (`image_like`/`from_image_like`).
    """

    denoiser: torch.nn.Module
    kwargs: dict
    sample_key: str
    step_index: int
    scheduler: object
    aspect: float

    @property
    def packed(self) -> bool:
        return self.kwargs[self.sample_key].ndim == 3

    @property
    def condition(self) -> torch.Tensor:
        return self.kwargs["encoder_hidden_states"]

    def image_like(self) -> torch.Tensor:
        """$x_t$ as `[1, C, h, w]` (Flux's packed tokens laid out on their grid)."""
        return self.image_like_of(self.kwargs[self.sample_key])

    def from_image_like(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2) if self.packed else x

    def __call__(self, x_image_like: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        r"""$\hat{x}_0$ `[n, C, h, w]` (image-like) for `n` inputs and `n` (or 1) conditionings."""
        n = max(x_image_like.shape[0], condition.shape[0])
        kwargs = {k: _repeat(v, n) for k, v in self.kwargs.items()}
        x = self.from_image_like(x_image_like.expand(n, *x_image_like.shape[1:]))
        kwargs[self.sample_key] = x
        kwargs["encoder_hidden_states"] = condition.expand(n, *condition.shape[1:])
        kwargs["return_dict"] = False
        out = self.denoiser(**kwargs)[0]
        if not self.packed and out.shape[1] == 2 * x.shape[1]:  # learned variance (PixArt, DiT): keep the mean
            out = out[:, : x.shape[1]]
        return self.image_like_of(self._x0(out, x))

    def image_like_of(self, packed: torch.Tensor) -> torch.Tensor:
        """Packed `[n, N, C]` tokens → `[n, C, h, w]` (identity for unpacked latents)."""
        if packed.ndim != 3:
            return packed
        n = packed.shape[1]
        h = round(math.sqrt(n * self.aspect))
        return packed.transpose(1, 2).reshape(packed.shape[0], packed.shape[2], h, n // h)

    def _x0(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self.scheduler, "alphas_cumprod"):
            return predict_original_sample(self.scheduler, out, self.timestep, x)
        sigma = float(self.scheduler.sigmas[self.step_index])  # flow matching: x_t = (1 - s) x0 + s eps, v = eps - x0
        return x.float() - sigma * out.float()

    @property
    def timestep(self) -> int:
        t = self.kwargs["timestep"]
        return int(t.flatten()[0]) if isinstance(t, torch.Tensor) else int(t)

    @property
    def noise_level(self) -> float:
        r"""$\bar\alpha_t$ for DDPM-family schedulers; $1 - \sigma^2$ for flow matching (pure-noise scale $\sigma$)."""
        if hasattr(self.scheduler, "alphas_cumprod"):
            return float(self.scheduler.alphas_cumprod[self.timestep])
        return 1.0 - float(self.scheduler.sigmas[self.step_index]) ** 2


class StepSnapshot:
    """A forward pre-hook keeping the conditional row of the denoiser's inputs at one step (installed by `with`)."""

    def __init__(self, denoiser: torch.nn.Module, capture, step_index: int, scheduler, aspect: float):
        self.denoiser, self.capture, self.step_index = denoiser, capture, step_index
        self.scheduler, self.aspect = scheduler, aspect
        self.signature = inspect.signature(denoiser.forward)
        self.seen, self.call, self.handle = -1, None, None

    def _hook(self, module, args, kwargs):
        bound = self.signature.bind_partial(*args, **kwargs).arguments
        sample_key = "sample" if "sample" in bound else "hidden_states"
        rows = self.capture._conditional_rows(bound.get("encoder_hidden_states"), bound.get(sample_key))
        if rows is None:
            return
        self.seen += 1
        if self.seen == self.step_index:
            batch = bound[sample_key].shape[0]
            kwargs = {k: _select(v, rows[:1], batch) for k, v in bound.items() if k != "return_dict"}
            self.call = DenoiserCall(self.denoiser, kwargs, sample_key, self.step_index, self.scheduler, self.aspect)

    def __enter__(self) -> StepSnapshot:
        self.handle = self.denoiser.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

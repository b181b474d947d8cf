r"""SHAP values of the denoiser at a step: `shap.GradientExplainer` (pixels) and a Partition explainer (patches)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from .attributions import alpha_bar, noise_level_baselines
from .base import DenoiserExplainer, ExplanationResult, attribution_maps, frozen_parameters, progress
from .target import ExplanationTarget, resolve_target

__all__ = ["DenoiserShap"]


def _import_shap():
    try:
        import shap
    except ImportError as err:  # pragma: no cover - shap is a core dependency
        raise ImportError("SHAP explanations need the `shap` package: `pip install shap`.") from err
    return shap


class _ScalarModel(torch.nn.Module):
    """
    The denoiser target at a fixed timestep as an `nn.Module` returning `[B, 1]`, the shape shap expects. The
    denoiser is deliberately *not* a submodule: shap calls `.eval()` and `.zero_grad()` on the model it is given,
    which must not change the caller's UNet (its mode or any gradients it holds).
    """

    def __init__(self, forward: Callable[..., torch.Tensor], cond: dict):
        super().__init__()
        self._forward = forward
        self._cond = cond

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cond = {k: v.expand(x.shape[0], *v.shape[1:]) for k, v in self._cond.items()}
        return self._forward(x, *cond.values()).unsqueeze(1)


class DenoiserShap(DenoiserExplainer):
    r"""
    SHAP values of the target w.r.t. $x_t$ at chosen steps, behind the same `attribute()` as the captum explainers.

    - `algorithm="gradient"`: `shap.GradientExplainer` (expected gradients; Erion et al., 2021) with a background of
      pure noise at the step's noise level ([`noise_level_baselines`]). `shap.DeepExplainer` is *not* used: its
      DeepLIFT rules fail the additivity check on UNets (SiLU, GroupNorm, attention).
    - `algorithm="partition"`: `shap.PartitionExplainer` with a `shap.maskers.Image` masker: Owen values of a
      hierarchy of image patches, whose "absent" value is `mask_value` (default 0, the mean of $x_t$). Coarse,
      model-agnostic and readable; costs about `max_evals` forward passes per sample.

    Each sample of the batch is explained on its own (shap explains one input at a time). The gradient algorithm takes
    any `[B, *S]` (images, table rows `[B, F]`, series windows `[B, C, L]`); the partition algorithm images only.
    https://arxiv.org/abs/1705.07874

    Example:

    ```py
    >>> res = DenoiserShap(pipe, algorithm="partition").attribute(out.trace, timesteps=[500], max_evals=256)
    >>> res.maps.shape  # [1, B, 1, H, W]
    ```
    """

    def __init__(
        self,
        model,
        algorithm: Literal["gradient", "partition"] = "gradient",
        scheduler=None,
        target: ExplanationTarget | Callable | None = None,
    ):
        if algorithm not in ("gradient", "partition"):
            raise ValueError(f"`algorithm` must be 'gradient' or 'partition', got {algorithm!r}.")
        super().__init__(model, scheduler, target)
        self.algorithm = algorithm
        self.method = "shap" if algorithm == "gradient" else "shap_partition"

    def attribute(
        self,
        inputs,
        timesteps: int | Sequence[int] | None = None,
        target: ExplanationTarget | Callable | None = None,
        background: torch.Tensor | None = None,
        nsamples: int = 64,
        max_evals: int = 256,
        mask_value: float | np.ndarray = 0.0,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        seed: int = 0,
    ) -> ExplanationResult:
        r"""
        Args:
            inputs ([`Trace`] or `torch.Tensor`): a trace or a batch $x_t$ `[B, *S]`.
            timesteps (`int` or `list[int]`, *optional*): default every recorded step (required for a tensor).
            target (*optional*): overrides the target bound in the constructor.
            background (`torch.Tensor`, *optional*): GradientExplainer background `[N, *S]`.
            nsamples (`int`, *optional*, defaults to 64): GradientExplainer samples per input.
            max_evals (`int`, *optional*, defaults to 256): Partition explainer budget per input.
            mask_value (`float` or `np.ndarray` `[H, W, C]`, *optional*, defaults to 0.0): value of a masked patch.
            encoder_hidden_states, class_labels (*optional*): the model's conditioning.
            seed (`int`, *optional*, defaults to 0): seeds the background and shap's sampling.

        Returns:
            [`ExplanationResult`]: `attributions` `[K, B, *S]`, `maps` (see [`ExplanationResult`]),
            `metadata["expected_value"]` `[K, B]` (the mean target over the background/fully masked input).
        """
        shap = _import_shap()
        target = self.target if target is None else resolve_target(target)
        steps = self._steps(inputs, timesteps, target)
        if self.algorithm == "partition" and steps[0].sample.ndim != 4:
            raise ValueError(
                f"algorithm='partition' masks image patches; samples of shape {tuple(steps[0].sample.shape)} are not "
                "images [B, C, H, W]: use DenoiserShap(model, algorithm='gradient')."
            )
        forward_fn = self.forward_function(target)
        generator = torch.Generator().manual_seed(seed)
        values, expected = [], []
        with frozen_parameters(self.unet):
            for step in progress(steps, desc=self.method):
                x = step.sample
                cond = self._conditioning(encoder_hidden_states, class_labels, x.shape[0])
                forward = forward_fn.bind(["sample"], list(cond), step.timestep)
                per_sample, per_expected = [], []
                for j in range(x.shape[0]):
                    model = _ScalarModel(forward, {k: v[j : j + 1] for k, v in cond.items()})
                    xj = x[j : j + 1]
                    numpy_state = np.random.get_state()  # shap re-seeds numpy's global RNG: give it back after
                    try:
                        if self.algorithm == "gradient":
                            t = step.timestep
                            v, e = self._gradient(shap, model, xj, t, background, nsamples, generator, seed)
                        else:
                            v, e = self._partition(shap, model, xj, max_evals, mask_value)
                    finally:
                        np.random.set_state(numpy_state)
                    per_sample.append(v)
                    per_expected.append(e)
                values.append(torch.cat(per_sample))
                expected.append(torch.tensor(per_expected))
        attributions = torch.stack(values)
        return ExplanationResult(
            method=self.method,
            attributions=attributions,
            maps=attribution_maps(attributions),
            timesteps=[s.timestep for s in steps],
            step_indices=[s.step_index for s in steps],
            metadata={"algorithm": self.algorithm, "expected_value": torch.stack(expected)},
            feature_names=self.feature_names,
        )

    def _gradient(self, shap, model, x, timestep, background, nsamples, generator, seed):
        if background is None:
            background = noise_level_baselines(x, alpha_bar(self.scheduler, timestep), 16, generator)
        background = background.to(device=x.device, dtype=x.dtype)
        if tuple(background.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(
                f"`background` must be [N, {', '.join(map(str, x.shape[1:]))}], got {tuple(background.shape)}."
            )
        with torch.enable_grad():
            explainer = shap.GradientExplainer(model, background, batch_size=nsamples)
            phi = explainer.shap_values(x, nsamples=nsamples, rseed=seed)
        phi = np.asarray(phi)
        if phi.ndim == x.ndim + 1:  # a trailing output dimension of size 1
            phi = phi[..., 0]
        with torch.no_grad():
            expected = float(model(background).mean())
        return torch.from_numpy(phi).float().reshape(x.shape).cpu(), expected

    def _partition(self, shap, model, x, max_evals, mask_value):
        c, h, w = x.shape[1:]
        if isinstance(mask_value, np.ndarray):
            if mask_value.shape != (h, w, c):
                raise ValueError(f"`mask_value` array must be [H, W, C] = {(h, w, c)}, got {mask_value.shape}.")
            fill = mask_value.astype(np.float32)
        else:
            fill = np.full((h, w, c), float(mask_value), dtype=np.float32)
        masker = shap.maskers.Image(fill)
        device, dtype = x.device, x.dtype

        def f(images: np.ndarray) -> np.ndarray:
            batch = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=dtype).permute(0, 3, 1, 2)
            with torch.no_grad():
                return model(batch)[:, 0].float().cpu().numpy()

        explainer = shap.PartitionExplainer(f, masker)
        image = x[0].permute(1, 2, 0).float().cpu().numpy()[None]
        explanation = explainer(image, max_evals=max_evals, batch_size=64, silent=True)
        phi = np.asarray(explanation.values)[0].reshape(h, w, c)
        return torch.from_numpy(phi).permute(2, 0, 1).unsqueeze(0).float(), float(
            np.asarray(explanation.base_values).ravel()[0]
        )

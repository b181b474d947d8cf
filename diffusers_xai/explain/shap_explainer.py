r"""SHAP values of the denoiser at a step: `shap.GradientExplainer` (pixels) and a Partition explainer (patches)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch

from .attributions import alpha_bar, noise_level_baselines
from .base import DenoiserExplainer, ExplanationResult, attribution_maps, frozen_parameters, progress
from .target import ExplanationTarget, class_embedding_module, resolve_target

__all__ = ["DenoiserShap"]

BACKGROUND_ROWS = 16  # default background: pure-noise draws at the step's noise level (at most `nsamples` of them)


def _import_shap():
    try:
        import shap
    except ImportError as err:  # pragma: no cover - shap is a core dependency
        raise ImportError("SHAP explanations need the `shap` package: `pip install shap`.") from err
    return shap


def _drop_output_axis(phi: np.ndarray, like: torch.Tensor) -> np.ndarray:
    """shap appends an output axis of size 1 to each input's values: drop it."""
    return phi[..., 0] if phi.ndim == like.ndim + 1 else phi


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
        self.last_output: torch.Tensor | None = None  # shap's constructor runs the background through the model

    def forward(self, x: torch.Tensor, class_embedding: torch.Tensor | None = None) -> torch.Tensor:
        cond = {k: v.expand(x.shape[0], *v.shape[1:]) for k, v in self._cond.items()}
        inputs = (x,) if class_embedding is None else (x, class_embedding)
        out = self._forward(*inputs, *cond.values()).unsqueeze(1)
        self.last_output = out.detach()
        return out


class _ShapOptions(NamedTuple):
    """The per-call settings of [`DenoiserShap.attribute`] shared by every input it explains."""

    background: torch.Tensor | None
    nsamples: int
    max_evals: int
    mask_value: float | np.ndarray
    seed: int
    generator: torch.Generator


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
        target_inputs: torch.Tensor | None = None,
        include_conditioning: bool = False,
        seed: int = 0,
    ) -> ExplanationResult:
        r"""
        Args:
            inputs ([`Trace`] or `torch.Tensor`): a trace or a batch $x_t$ `[B, *S]`.
            timesteps (`int` or `list[int]`, *optional*): default every recorded step (required for a tensor).
            target (*optional*): overrides the target bound in the constructor.
            background (`torch.Tensor`, *optional*): GradientExplainer background `[N, *S]`; default
                `min(16, nsamples)` pure-noise draws at the step's noise level (16 with `include_conditioning`).
            nsamples (`int`, *optional*, defaults to 64): GradientExplainer samples per input.
            max_evals (`int`, *optional*, defaults to 256): Partition explainer budget per input.
            mask_value (`float` or `np.ndarray` `[H, W, C]`, *optional*, defaults to 0.0): value of a masked patch.
            encoder_hidden_states, class_labels (*optional*): the model's conditioning.
            target_inputs (`torch.Tensor`, *optional*): per-sample inputs of the target's `fn` ([`ExplanationTarget`]).
            include_conditioning (`bool`, *optional*, defaults to `False`): also attribute to the class embedding of a
                class-conditional model (gradient algorithm; background: the embeddings of every class), as
                [`DenoiserAttribution`] does; `attributions` become `(x_t, class embedding)` and
                `metadata["conditioning_scores"]` `[K, B]` sums the latter.
            seed (`int`, *optional*, defaults to 0): seeds the background and shap's sampling.

        Returns:
            [`ExplanationResult`]: `attributions` `[K, B, *S]`, `maps` (see [`ExplanationResult`]),
            `metadata["expected_value"]` `[K, B]` (the mean target over the background/fully masked input).
        """
        shap = _import_shap()
        target = self.target if target is None else resolve_target(target)
        steps = self._steps(inputs, timesteps, target)
        self._check_partition_input(steps[0].sample)
        embedding = self._class_embeddings() if include_conditioning else None
        forward_fn = self.forward_function(target)
        options = _ShapOptions(background, nsamples, max_evals, mask_value, seed, torch.Generator().manual_seed(seed))
        values, cond_values, expected = [], [], []
        with frozen_parameters(self.unet):
            for step in progress(steps, desc=self.method):
                cond = self._conditioning(encoder_hidden_states, class_labels, step.sample.shape[0], target_inputs)
                names = ["sample"] + (["class_embedding"] if embedding is not None else [])
                forward = forward_fn.bind(names, list(cond), step.timestep)
                v, c, e = self._explain_step(shap, forward, cond, step, embedding, options)
                values.append(v)
                cond_values += [c] if c is not None else []
                expected.append(e)
        return self._result(steps, torch.stack(values), cond_values, torch.stack(expected))

    def _check_partition_input(self, sample: torch.Tensor) -> None:
        """The partition explainer masks image patches: refuse samples that are not `[B, C, H, W]`."""
        if self.algorithm == "partition" and sample.ndim != 4:
            raise ValueError(
                f"algorithm='partition' masks image patches; samples of shape {tuple(sample.shape)} are not "
                "images [B, C, H, W]: use DenoiserShap(model, algorithm='gradient')."
            )

    def _explain_step(
        self, shap, forward, cond: dict, step, embedding, options: _ShapOptions
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """shap values `[B, *S]`, class-embedding values `[B, D]` (or None) and expected values `[B]` of one step."""
        x = step.sample
        per_sample, per_cond, per_expected = [], [], []
        for j in range(x.shape[0]):
            model = _ScalarModel(forward, {k: v[j : j + 1] for k, v in cond.items()})
            v, c, e = self._explain_sample(shap, model, x[j : j + 1], step.timestep, cond, j, embedding, options)
            per_sample.append(v)
            per_cond += [c] if c is not None else []
            per_expected.append(e)
        return torch.cat(per_sample), (torch.cat(per_cond) if per_cond else None), torch.tensor(per_expected)

    def _explain_sample(self, shap, model, xj, timestep, cond: dict, j: int, embedding, options: _ShapOptions):
        """(values, class-embedding values or None, expected value) of one input `[1, *S]`."""
        o = options
        numpy_state = np.random.get_state()  # shap re-seeds numpy's global RNG: give it back after
        try:
            if embedding is not None:
                emb = (embedding[0](cond["class_labels"][j : j + 1]).detach(), embedding[1])
                return self._gradient(shap, model, xj, timestep, o.background, o.nsamples, o.generator, o.seed, emb)
            if self.algorithm == "gradient":
                v, _, e = self._gradient(shap, model, xj, timestep, o.background, o.nsamples, o.generator, o.seed)
                return v, None, e
            v, e = self._partition(shap, model, xj, o.max_evals, o.mask_value)
            return v, None, e
        finally:
            np.random.set_state(numpy_state)

    def _result(
        self, steps, attributions: torch.Tensor, cond_values: list[torch.Tensor], expected: torch.Tensor
    ) -> ExplanationResult:
        """The [`ExplanationResult`] of stacked per-step values (with the class-embedding scores when present)."""
        metadata = {"algorithm": self.algorithm, "expected_value": expected}
        if cond_values:
            metadata |= {"conditioning": "class_embedding", "conditioning_scores": torch.stack(cond_values).sum(-1)}
        return ExplanationResult(
            method=self.method,
            attributions=(attributions, torch.stack(cond_values)) if cond_values else attributions,
            maps=attribution_maps(attributions),
            timesteps=[s.timestep for s in steps],
            step_indices=[s.step_index for s in steps],
            metadata=metadata,
            feature_names=self.feature_names,
        )

    def _class_embeddings(self) -> tuple[torch.nn.Module, torch.Tensor]:
        """The class-embedding layer and the embedding of every class (the background of the conditioning input)."""
        if self.algorithm != "gradient":
            raise ValueError(
                "include_conditioning=True needs algorithm='gradient' (the partition explainer masks pixels)."
            )
        module = class_embedding_module(self.unet)
        if module is None or not hasattr(module, "num_embeddings"):
            raise ValueError(
                f"include_conditioning=True needs a class-conditional model with an nn.Embedding class embedding; "
                f"{type(self.unet).__name__} has none: drop include_conditioning."
            )
        with torch.no_grad():
            return module, module(torch.arange(module.num_embeddings, device=self.device)).to(self.dtype)

    def _gradient(self, shap, model, x, timestep, background, nsamples, generator, seed, embedding=None):
        """shap values of one input `[1, *S]` (and of its class embedding when `embedding = (e_y, every e_k)`)."""
        if background is None:
            # each of shap's samples picks one background row at random; the rows are iid draws, so a pick is a fresh
            # draw of the same noise whether there are 16 rows or `nsamples`. shap's constructor runs every row through
            # the model: on a 35.7M UNet a forward of 16 rows costs as much as nsamples=8's gradients. With the class
            # embeddings the rows also cycle through the classes: keep all of them.
            rows = BACKGROUND_ROWS if embedding is not None else min(BACKGROUND_ROWS, nsamples)
            background = noise_level_baselines(x, alpha_bar(self.scheduler, timestep), rows, generator)
        background = background.to(device=x.device, dtype=x.dtype)
        if tuple(background.shape[1:]) != tuple(x.shape[1:]):
            raise ValueError(
                f"`background` must be [N, {', '.join(map(str, x.shape[1:]))}], got {tuple(background.shape)}."
            )
        data, point = background, x
        if embedding is not None:  # background embeddings: every class in turn, as many as background rows
            every = embedding[1]
            data = [background, every[torch.arange(background.shape[0], device=every.device) % every.shape[0]]]
            point = [x, embedding[0]]
        with torch.no_grad():  # the constructor only runs the background forward: keep its output, skip the graph
            explainer = shap.GradientExplainer(model, data, batch_size=nsamples)
        expected = float(model.last_output.float().mean())  # the mean target over the background
        with torch.enable_grad():
            phi = explainer.shap_values(point, nsamples=nsamples, rseed=seed)
        phis = [_drop_output_axis(np.asarray(p), p_in) for p, p_in in zip(phi, point)] if embedding else None
        phi_x = phis[0] if phis else _drop_output_axis(np.asarray(phi), x)
        phi_c = torch.from_numpy(phis[1]).float().cpu() if phis else None
        return torch.from_numpy(phi_x).float().reshape(x.shape).cpu(), phi_c, expected

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

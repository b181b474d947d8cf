r"""captum attributions of the denoiser at a step: IntegratedGradients, GradientShap, Saliency, Occlusion, ..."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from captum.attr import GradientShap, InputXGradient, IntegratedGradients, NoiseTunnel, Occlusion, Saliency

from .base import DenoiserExplainer, ExplanationResult, attribution_maps, frozen_parameters, progress
from .target import ExplanationTarget, class_embedding_module, resolve_target

__all__ = ["ATTRIBUTION_METHODS", "DenoiserAttribution", "SMOOTHGRAD_DEFAULTS", "alpha_bar", "noise_level_baselines"]

ATTRIBUTION_METHODS = {
    "integrated_gradients": IntegratedGradients,
    "gradient_shap": GradientShap,
    "saliency": Saliency,
    "smoothgrad": Saliency,  # wrapped in captum's NoiseTunnel (`DenoiserAttribution._captum`)
    "input_x_gradient": InputXGradient,
    "occlusion": Occlusion,
}
_HAS_DELTA = ("integrated_gradients", "gradient_shap")
_UNSIGNED = ("saliency", "smoothgrad")  # captum's Saliency default `abs=True`: |gradient|, a magnitude
# SmoothGrad's defaults: 16 noisy copies, all in one batch; the noise's std is the step's own, sqrt(1 - alpha_bar_t)
SMOOTHGRAD_DEFAULTS = {"nt_type": "smoothgrad", "nt_samples": 16, "nt_samples_batch_size": 16}


def noise_level_baselines(
    sample: torch.Tensor, alpha_bar_t: float, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""
    `n` draws of $\sqrt{1-\bar\alpha_t}\,\epsilon$, $\epsilon \sim \mathcal{N}(0, I)$: $x_t$ of a mid-grey image
    (a mean row / window; $x_0 = 0$) at the same noise level, the reference distribution of GradientShap/SHAP at
    timestep $t$. `sample` is `[B, *S]`; returns `[n, *S]`.
    """
    noise = torch.randn((n, *sample.shape[1:]), generator=generator, dtype=torch.float32)
    return (noise * (1 - alpha_bar_t) ** 0.5).to(device=sample.device, dtype=sample.dtype)


def alpha_bar(scheduler, timestep: int) -> float:
    if scheduler is None or not hasattr(scheduler, "alphas_cumprod"):
        return 0.0  # no schedule known: treat x_t as pure noise
    return float(scheduler.alphas_cumprod[int(timestep)])


class DenoiserAttribution(DenoiserExplainer):
    r"""
    captum attributions of the target w.r.t. $x_t$ (and optionally the conditioning) at chosen steps.

    Methods (`method=`):

    - `"integrated_gradients"`: $(x - x')\int_0^1 \partial y(x' + \alpha(x - x'))/\partial x \,d\alpha$, baseline
      $x' = 0$ (the mean of $x_t$) unless `baselines=` is given (`baselines="noise"`: a fresh-noise draw at the
      step's level). https://arxiv.org/abs/1703.01365
    - `"gradient_shap"`: expected gradients against a baseline *distribution*; the default is
      [`noise_level_baselines`] (pure noise at the step's noise level). https://arxiv.org/abs/1705.07874
    - `"saliency"`: $|\partial y / \partial x|$. https://arxiv.org/abs/1312.6034
    - `"smoothgrad"`: SmoothGrad (Smilkov et al. 2017, https://arxiv.org/abs/1706.03825), captum's
      `NoiseTunnel(Saliency)`: the mean of $|\partial y / \partial x|$ at `nt_samples=16` copies
      $x_t + \sigma\epsilon$, with $\sigma = \sqrt{1-\bar\alpha_t}$ (`stdevs`) unless given: the noise level
      of the step itself, the neighbourhood of $x_t$ the sampler visits. `nt_type="smoothgrad_sq"` averages the
      squares; `abs=False` the signed gradients.
    - `"input_x_gradient"`: $x \odot \partial y / \partial x$.
    - `"occlusion"`: the change of $y$ when a sliding window of $x_t$ is set to the baseline (default 0);
      window `sliding_window_shapes=(C, k, k)` with $k = \max(1, H/8)$ and stride $k$ unless given (series: one
      channel at one time point; rows: one feature). Occluded inputs are evaluated `perturbations_per_eval=64` at a
      time.

    Inputs are any `[B, *S]`: images `[B, C, H, W]`, table rows `[B, F]`, series windows `[B, C, L]`; `maps` sum the
    channels of images and windows and keep rows' features (see [`ExplanationResult`]).

    With `include_conditioning=True` the conditioning is a second input and the attributions are a tuple
    `(x_t attributions, conditioning attributions)`, as captum mirrors its inputs: `encoder_hidden_states`
    `[B, tokens, dim]` for a `UNet2DConditionModel`, or, for a class-conditional UNet, the class *embedding* vector
    `[B, dim]` (a discrete label has no gradient; its embedding is swapped in with a forward hook, baseline 0).
    `metadata["conditioning_scores"]` sums them to one number per token `[K, B, tokens]` (or per sample `[K, B]`).

    Args:
        model (`DiffusionPipeline` or `torch.nn.Module`): a pipeline or a denoiser.
        method (`str`, *optional*, defaults to `"integrated_gradients"`): one of [`ATTRIBUTION_METHODS`].
        scheduler (*optional*): needed with a bare denoiser when the target is $\hat{x}_0$.
        target ([`ExplanationTarget`] or callable, *optional*): what is explained.
        multiply_by_inputs (`bool`, *optional*, defaults to `True`): captum's global (True) or local attributions
            for IntegratedGradients/GradientShap.
        baselines (*optional*): the default `baselines=` of [`attribute`] (e.g. `"noise"`); a call's own wins.

    Example:

    ```py
    >>> ig = DenoiserAttribution(pipe, "integrated_gradients")
    >>> res = ig.attribute(out.trace, timesteps=[999], n_steps=32, return_convergence_delta=True)
    >>> res.maps.shape, res.delta.abs().max()
    ```
    """

    def __init__(
        self,
        model,
        method: str = "integrated_gradients",
        scheduler=None,
        target: ExplanationTarget | Callable | None = None,
        multiply_by_inputs: bool = True,
        baselines: torch.Tensor | float | str | None = None,
    ):
        if method not in ATTRIBUTION_METHODS:
            raise ValueError(f"Unknown attribution method {method!r}; choose one of {sorted(ATTRIBUTION_METHODS)}.")
        if isinstance(baselines, str) and baselines != "noise":
            raise ValueError(f"`baselines` as a string must be 'noise' (fresh noise at the step's level), got "
                             f"{baselines!r}; or pass a tensor or a number.")  # fmt: skip
        super().__init__(model, scheduler, target)
        self.method = method
        self.multiply_by_inputs = multiply_by_inputs
        self.baselines = baselines

    def _captum(self, forward):
        cls = ATTRIBUTION_METHODS[self.method]
        if self.method in ("integrated_gradients", "gradient_shap"):
            return cls(forward, multiply_by_inputs=self.multiply_by_inputs)
        if self.method == "smoothgrad":
            return NoiseTunnel(cls(forward))
        return cls(forward)

    def _conditioning_input(self, cond: dict, include: bool) -> tuple[str | None, torch.Tensor | None]:
        if not include:
            return None, None
        if "encoder_hidden_states" in cond:
            return "encoder_hidden_states", cond.pop("encoder_hidden_states")
        module = class_embedding_module(self.unet)
        if module is not None:
            labels = cond.get("class_labels")
            if labels is None:
                raise ValueError("include_conditioning=True on a class-conditional UNet needs `class_labels=`.")
            with torch.no_grad():
                emb = module(labels)
            return "class_embedding", emb.to(self.dtype)
        raise ValueError(
            f"include_conditioning=True but {type(self.unet).__name__} got no conditioning: pass "
            "`encoder_hidden_states=` (text-conditional UNet) or `class_labels=` (class-conditional UNet)."
        )

    def attribute(
        self,
        inputs,
        timesteps: int | Sequence[int] | None = None,
        target: ExplanationTarget | Callable | None = None,
        baselines: torch.Tensor | float | tuple | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        target_inputs: torch.Tensor | None = None,
        include_conditioning: bool = False,
        return_convergence_delta: bool = False,
        seed: int = 0,
        **method_kwargs,
    ) -> ExplanationResult:
        r"""
        Args:
            inputs ([`Trace`] or `torch.Tensor`): a trace (its recorded $x_t$) or a batch $x_t$ `[B, *S]`.
            timesteps (`int` or `list[int]`, *optional*): scheduler timesteps (default: every recorded step of a
                trace; required for a tensor).
            target (*optional*): overrides the target bound in the constructor.
            baselines (*optional*): captum baselines (GradientShap: a distribution `[N, C, H, W]`), or `"noise"`:
                fresh noise at the step's level, $\sqrt{1-\bar\alpha_t}\,\epsilon$ ($x_t$ of $x_0 = 0$, the
                forward-diffused mean image; [`noise_level_baselines`]), one seeded draw per sample (IG: Sturmfels
                et al. 2020's Gaussian baseline at the sampler's own noise level; GradientShap: its default 8 draws).
            encoder_hidden_states, class_labels (`torch.Tensor`, *optional*): the model's conditioning.
            target_inputs (`torch.Tensor`, *optional*): per-sample inputs of the target's `fn` ([`ExplanationTarget`]).
            include_conditioning (`bool`, *optional*, defaults to `False`): also attribute to the conditioning.
            return_convergence_delta (`bool`, *optional*, defaults to `False`): IG/GradientShap completeness gap.
            seed (`int`, *optional*, defaults to 0): seeds the default GradientShap baselines.
            **method_kwargs: passed to captum's `attribute` (`n_steps`, `n_samples`, `stdevs`,
                `sliding_window_shapes`, `strides`, `perturbations_per_eval`, `internal_batch_size`, ...).

        Returns:
            [`ExplanationResult`]: `attributions` `[K, B, *S]` (a tuple with the conditioning's when
            `include_conditioning`), `maps` (`[K, B, 1, H, W]`, `[K, B, 1, L]` or `[K, B, F]`), `delta` `[K, B]` on
            request, `feature_names` from the pipeline's preprocessor (tables, series).
        """
        if return_convergence_delta and self.method not in _HAS_DELTA:
            raise ValueError(f"return_convergence_delta is only defined for {_HAS_DELTA}, not {self.method!r}.")
        target = self.target if target is None else resolve_target(target)
        steps = self._steps(inputs, timesteps, target)
        forward_fn = self.forward_function(target)
        generator = torch.Generator().manual_seed(seed)
        baselines = self.baselines if baselines is None else baselines
        sample_attr, cond_attr, deltas = [], [], []
        cond_name = None
        with frozen_parameters(self.unet):
            for step in progress(steps, desc=self.method):
                cond = self._conditioning(encoder_hidden_states, class_labels, step.sample.shape[0], target_inputs)
                cond_name, cond_value = self._conditioning_input(cond, include_conditioning)
                out, delta = self._attribute_step(
                    forward_fn, step, cond, cond_name, cond_value, baselines, generator,
                    return_convergence_delta, method_kwargs,
                )  # fmt: skip
                if delta is not None:
                    deltas.append(delta)
                sample_attr.append(out[0].detach().float().cpu())
                if len(out) > 1:
                    cond_attr.append(out[1].detach().float().cpu())
        result = self._result(steps, torch.stack(sample_attr), cond_attr, cond_name, deltas)
        result.signed = self.signed_maps(method_kwargs)
        if isinstance(baselines, str):  # "noise": recorded, a tensor is the caller's to record
            result.metadata["baselines"] = baselines
        if self.method == "smoothgrad":
            result.metadata["smoothgrad"] = self._smoothgrad_metadata(method_kwargs)
        return result

    def signed_maps(self, method_kwargs: dict | None = None) -> bool:
        r"""Whether this method's maps are signed: all but saliency and SmoothGrad, whose captum default `abs=True`
        gives $|\partial y / \partial x|$, a magnitude (`abs=False` gives the signed gradient; SmoothGrad's
        `nt_type="smoothgrad_sq"` squares, so it is never signed)."""
        kwargs = method_kwargs or {}
        if self.method == "smoothgrad" and kwargs.get("nt_type", SMOOTHGRAD_DEFAULTS["nt_type"]) != "smoothgrad":
            return False
        return self.method not in _UNSIGNED or not kwargs.get("abs", True)

    @staticmethod
    def _smoothgrad_metadata(method_kwargs: dict) -> dict:
        """SmoothGrad's parameters as run, for the result's metadata and the card."""
        out = {k: method_kwargs.get(k, v) for k, v in SMOOTHGRAD_DEFAULTS.items()}
        stdevs = method_kwargs.get("stdevs")
        out["stdevs"] = "sqrt(1 - alpha_bar_t)" if stdevs is None else stdevs
        return out

    def _method_kwargs(self, xs: tuple, timestep: int, baselines, generator, delta: bool, method_kwargs) -> dict:
        """captum's `attribute` keywords for one step: baselines, default occlusion windows, convergence delta."""
        kwargs = dict(method_kwargs)
        if self.method == "smoothgrad":
            kwargs = {**SMOOTHGRAD_DEFAULTS, **kwargs}
            if kwargs.get("stdevs") is None:  # the step's noise level, in x_t's units; the conditioning is not noised
                sigma = (1.0 - alpha_bar(self.scheduler, timestep)) ** 0.5
                kwargs["stdevs"] = (sigma, *(0.0 for _ in xs[1:])) if len(xs) > 1 else sigma
        if self.method not in ("saliency", "smoothgrad", "input_x_gradient"):
            kwargs["baselines"] = self._baselines(baselines, xs, timestep, generator)
        if self.method == "occlusion":
            windows, strides = self._default_occlusion(xs)
            kwargs.setdefault("sliding_window_shapes", windows)
            kwargs.setdefault("strides", strides)
            kwargs.setdefault("perturbations_per_eval", 64)
        if self.method in _HAS_DELTA and delta:
            kwargs["return_convergence_delta"] = True
        return kwargs

    def _attribute_step(
        self, forward_fn, step, cond: dict, cond_name, cond_value, baselines, generator, delta: bool, method_kwargs
    ) -> tuple[tuple, torch.Tensor | None]:
        """captum's attributions at one step: `((x_t attributions[, conditioning attributions]), delta or None)`."""
        x = step.sample
        input_names = ["sample"] + ([cond_name] if cond_name else [])
        xs = (x,) + ((cond_value,) if cond_value is not None else ())
        forward = forward_fn.bind(input_names, list(cond), step.timestep)
        kwargs = self._method_kwargs(xs, step.timestep, baselines, generator, delta, method_kwargs)
        extras = tuple(cond.values())
        with torch.enable_grad():
            xs_grad = tuple(v.detach().requires_grad_(True) for v in xs)
            out = self._captum(forward).attribute(
                xs_grad if len(xs) > 1 else xs_grad[0], additional_forward_args=extras or None, **kwargs
            )
        gap = None
        if delta:
            out, gap = out
            if self.method == "gradient_shap":  # one delta per (sample, baseline draw)
                gap = gap.reshape(x.shape[0], -1).mean(dim=1)
            gap = gap.detach().float().cpu()
        return (out if isinstance(out, tuple) else (out,)), gap

    def _result(self, steps, attributions: torch.Tensor, cond_attr: list, cond_name, deltas: list):
        metadata = {"multiply_by_inputs": self.multiply_by_inputs}
        result_attr: torch.Tensor | tuple = attributions
        if cond_attr:
            cond_stack = torch.stack(cond_attr)
            result_attr = (attributions, cond_stack)
            metadata["conditioning"] = cond_name
            metadata["conditioning_scores"] = cond_stack.sum(dim=-1)
        return ExplanationResult(
            method=self.method,
            attributions=result_attr,
            maps=attribution_maps(attributions),
            timesteps=[s.timestep for s in steps],
            step_indices=[s.step_index for s in steps],
            delta=torch.stack(deltas) if deltas else None,
            metadata=metadata,
            feature_names=self.feature_names,
        )

    def _baselines(self, baselines, xs: tuple, timestep: int, generator: torch.Generator):
        if isinstance(baselines, str):
            if baselines != "noise":
                raise ValueError(f"`baselines` as a string must be 'noise' (fresh noise at the step's level), got "
                                 f"{baselines!r}; or pass a tensor or a number.")  # fmt: skip
        elif baselines is not None:
            return baselines
        elif self.method != "gradient_shap":
            return None  # captum's default: zeros
        # "noise": one draw per sample (IG, occlusion: x' ~ q(x_t | x_0 = 0)); GradientShap's distribution: 8 draws
        n = 8 if self.method == "gradient_shap" else xs[0].shape[0]
        draws = [noise_level_baselines(xs[0], alpha_bar(self.scheduler, timestep), n, generator)]
        draws += [torch.zeros((n, *c.shape[1:]), device=c.device, dtype=c.dtype) for c in xs[1:]]
        return tuple(draws) if len(draws) > 1 else draws[0]

    @staticmethod
    def _default_occlusion(xs: tuple) -> tuple:
        """Windows of (C, H/8, W/8) patches of x_t with the same stride (one feature of a row; one channel at one
        time point of a series window: a window over every channel would occlude an output's own point together with
        its causes in other channels, issue 13); one token (or the whole class embedding) of the conditioning."""
        shape = tuple(xs[0].shape[1:])
        if len(shape) <= 2:  # a row's feature, or one channel at one time point of a window `[C, L]`
            window = stride = (1,) * len(shape)
        else:
            window = (shape[0], *(max(1, s // 8) for s in shape[1:]))
            stride = (1, *window[1:])
        if len(xs) == 1:
            return window, stride
        windows, strides = [window], [stride]
        for extra in xs[1:]:
            shape = tuple(extra.shape[1:])
            windows.append((1, *shape[1:]) if len(shape) > 1 else shape)
            strides.append(windows[-1])
        return tuple(windows), tuple(strides)

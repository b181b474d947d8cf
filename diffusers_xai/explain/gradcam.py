r"""GradCAM over the blocks of a diffusers UNet at chosen denoising steps (Selvaraju et al., 2017)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from captum.attr import LayerAttribution, LayerGradCam

from ..capture import ActivationCapture, resolve_module_names
from .base import DenoiserExplainer, ExplanationResult, frozen_parameters, progress
from .target import ExplanationTarget, resolve_target

__all__ = [
    "GRADCAM_LAYER_PRESETS",
    "DenoiserGradCAM",
    "default_gradcam_layers",
    "grad_cam",
    "output_gradcam_layers",
    "vanishing_gradcam_layers",
]

# upsampling of a layer map to the sample: series windows [B, C, L], images [B, C, H, W], volumes [B, C, D, H, W]
_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
_MODES_BY_NDIM = (3, 4, 5)


def default_gradcam_layers(unet: torch.nn.Module) -> list[str]:
    """The top-level blocks of a diffusers UNet: every `down_blocks.i`, `mid_block` and every `up_blocks.i`."""
    names = [
        n for n, _ in unet.named_modules() if n.count(".") == 1 and n.split(".")[0] in ("down_blocks", "up_blocks")
    ]
    if getattr(unet, "mid_block", None) is not None:
        names.insert(len([n for n in names if n.startswith("down_blocks")]), "mid_block")
    return names


def output_gradcam_layers(unet: torch.nn.Module, n: int = 1) -> list[str]:
    """
    The last `n` up blocks of a diffusers UNet (`up_blocks.<last>` first of the two for `n=2`): the layers nearest
    the output, at the sample's resolution. Selvaraju et al. take the last convolutional layer, whose map has the
    finest resolution that still sees the whole network; in a UNet that is the last up block.
    """
    if n < 1:
        raise ValueError(f"`n` must be >= 1 (the number of last up blocks), got {n}.")
    ups = [name for name in default_gradcam_layers(unet) if name.startswith("up_blocks.")]
    if not ups:
        raise ValueError(f"{type(unet).__name__} has no `up_blocks`; pass `layer=` with its module names.")
    return ups[-n:]


# `layer=` names of layer sets: every block (the default), the last up block, the last two up blocks
GRADCAM_LAYER_PRESETS = {
    "all_blocks": default_gradcam_layers,
    "output_block": output_gradcam_layers,
    "output_blocks": lambda unet: output_gradcam_layers(unet, 2),
}


CAM_WEIGHTINGS = ("gradcam", "hirescam")


def vanishing_gradcam_layers(unet: torch.nn.Module) -> list[str]:
    r"""
    The blocks whose GradCAM channel weights are identically 0: the last up block of a UNet whose `conv_norm_out`
    normalises each channel alone (a `GroupNorm` with as many groups as channels, as in tiny test UNets).

    That block's output reaches the prediction only through `conv_norm_out`, which is unchanged when a constant is
    added to one channel; so the gradient of any target sums to 0 over each channel's positions and $\alpha_k$, its
    mean, is 0 for every channel $k$. The map left is float rounding (about 1e-8, and it differs between CPUs);
    divided by its own maximum it would enter a layer average at full weight. HiResCAM keeps the gradient per
    position and is not affected.
    """
    norm = getattr(unet, "conv_norm_out", None)
    if not isinstance(norm, torch.nn.GroupNorm) or norm.num_groups != norm.num_channels:
        return []
    ups = [name for name in default_gradcam_layers(unet) if name.startswith("up_blocks.")]
    return ups[-1:]


def _drop_vanishing(unet: torch.nn.Module, layers: list[str], preset: bool) -> list[str]:
    """`layers` without [`vanishing_gradcam_layers`]: dropped with a warning from a preset, refused when named."""
    structural = vanishing_gradcam_layers(unet)
    vanishing = [name for name in layers if name in structural]
    if not vanishing:
        return layers
    norm = unet.conv_norm_out
    why = (
        f"The GradCAM weights of {vanishing[0]!r} are identically 0 on this UNet: its output feeds `conv_norm_out`, "
        f"a GroupNorm with one channel per group ({norm.num_groups} groups over {norm.num_channels} channels), "
        f"whose input gradient sums to 0 over each channel"
    )
    kept = [name for name in layers if name not in vanishing]
    if not preset or not kept:
        raise ValueError(f'{why}; use `weighting="hirescam"` or another layer.')
    warnings.warn(f"{why}; it is left out of the GradCAM layers {kept}.", stacklevel=3)
    return kept


def _cam(
    activation: torch.Tensor, gradient: torch.Tensor, relu_attributions: bool, weighting: str = "gradcam"
) -> torch.Tensor:
    # gradcam: the same reduction as captum's LayerGradCam, the mean gradient over every dimension after the channel
    # one; hirescam (Draelos & Carin 2020): the gradient itself at every position, no spatial average
    if weighting == "hirescam":
        alpha = gradient
    else:
        alpha = gradient.mean(dim=tuple(range(2, gradient.ndim)), keepdim=True)
    cam = (alpha * activation).sum(dim=1, keepdim=True)
    return cam.clamp_min(0) if relu_attributions else cam


def grad_cam(
    forward_func: Callable[..., torch.Tensor],
    model: torch.nn.Module,
    layers: Sequence[str],
    inputs: torch.Tensor,
    additional_forward_args: Sequence = (),
    relu_attributions: bool = False,
    weighting: str = "gradcam",
) -> dict[str, torch.Tensor]:
    r"""
    GradCAM of several layers from ONE forward and backward pass, through [`ActivationCapture`].

    For each layer with activations $A^k$ (`[B, K, h, w]`): $\alpha_k = \operatorname{mean}_{ij}
    \partial y / \partial A^k_{ij}$ and $L = \sum_k \alpha_k A^k$ (`[B, 1, h, w]`), $y$ = `forward_func(inputs,
    *additional_forward_args)` summed over the batch. As captum's `LayerGradCam`, the ReLU of the paper is applied
    only with `relu_attributions=True`. `weighting="hirescam"` (HiResCAM, Draelos & Carin 2020,
    https://arxiv.org/abs/2011.08891) keeps the gradient per position, $L = \sum_k \partial y / \partial A^k \odot
    A^k$: the spatial average of GradCAM's $\alpha_k$ can move the map away from where the gradient is (the paper's
    failure case), HiResCAM's cannot. Written by hand (instead of one captum `LayerGradCam` per layer) because
    captum needs one backward per layer and cannot hook blocks that return tuples (diffusers' down blocks).

    Returns:
        `dict[str, torch.Tensor]`: layer name → `[B, 1, h, w]` (detached).
    """
    names = list(layers)
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad(), ActivationCapture(model, names) as cap:
        y = forward_func(x, *additional_forward_args)
        missing = [n for n in names if n not in cap.activations]
        if missing:
            raise ValueError(f"Layers {missing} were not called in the forward pass; pick layers the model runs.")
        acts = [cap.activations[n] for n in names]
        for name, a in zip(names, acts):
            if a.ndim < 3:
                raise ValueError(
                    f"GradCAM needs a spatial layer output [B, C, h, w]; {name!r} gives {tuple(a.shape)}."
                )
        grads = torch.autograd.grad(y.sum(), acts, allow_unused=True)
    return {
        n: _cam(a.detach(), torch.zeros_like(a) if g is None else g.detach(), relu_attributions, weighting)
        for n, a, g in zip(names, acts, grads)
    }


def _per_sample(cam: torch.Tensor, batch_size: int, relu_attributions: bool) -> torch.Tensor:
    r"""
    One CAM per explained sample, the paper's ReLU applied last. A target whose forward runs the denoiser on a
    stacked batch ([`ConditionTarget`]: $[x_t \mid c;\ x_t \mid \varnothing]$, the null pass repeated per class for
    `null_class="mean"`) gives the layer once per pass, all at the same positions of the same $x_t$. GradCAM is
    linear in the target ($\alpha_k$ is a mean gradient), so the CAM of $y_c - y_\varnothing$ is the sum of every
    pass's CAM: the conditional pass's minus the null passes' (their gradients carry the minus sign). Keeping the
    conditional pass alone would explain $y_c$, the class's whole prediction, not the difference it makes.
    """
    cam = cam.reshape(-1, batch_size, *cam.shape[1:]).sum(dim=0)
    return cam.clamp_min(0) if relu_attributions else cam


class DenoiserGradCAM(DenoiserExplainer):
    r"""
    GradCAM of a diffusers UNet's blocks at chosen denoising steps.

    The target $y$ ([`ExplanationTarget`], default: the model's term of $\hat{x}_0$) is differentiated w.r.t. the
    activations of each layer at the recorded $x_t$. A single layer whose output is a tensor goes through captum's
    `LayerGradCam`; several layers (the default: every down block, the mid block, every up block) share one
    forward+backward pass through [`grad_cam`]. Layer maps are upsampled (bi)linearly to the sample size (images
    `[B, C, H, W]`, series windows `[B, C, L]` of 1-D UNets; rows have no spatial axis and are refused); the
    combined map is the mean over layers of each map divided by its largest absolute value (per sample), so
    every layer weighs the same.

    Args:
        model (`DiffusionPipeline` or `torch.nn.Module`): a pipeline (its `unet` and `scheduler`) or a denoiser.
        layer (`str` or `list[str]`, *optional*): dotted module names or `fnmatch` patterns, or a preset of
            [`GRADCAM_LAYER_PRESETS`]: `"all_blocks"` (the default), `"output_block"` (the last up block, at the
            sample's resolution: [`output_gradcam_layers`]), `"output_blocks"` (the last two up blocks). With
            `weighting="gradcam"`, a block whose weights vanish by the model's structure
            ([`vanishing_gradcam_layers`]) is left out of a preset with a warning and refused by name.
        scheduler (*optional*): needed with a bare denoiser when the target is $\hat{x}_0$.
        target ([`ExplanationTarget`] or callable, *optional*): what is explained.
        weighting (`str`, *optional*, defaults to `"gradcam"`): `"gradcam"` (channel weights = spatially averaged
            gradients) or `"hirescam"` (the gradient at each position times the activation, summed over channels;
            https://arxiv.org/abs/2011.08891), see [`grad_cam`].

    Paper: https://arxiv.org/abs/1610.02391

    Example:

    ```py
    >>> out = pipe(num_inference_steps=20, trace=True, output_type="pt")
    >>> cam = DenoiserGradCAM(pipe, layer=["mid_block", "up_blocks.0"])
    >>> res = cam.attribute(out.trace, timesteps=out.trace.timesteps[[0, -1]].tolist())
    >>> res.maps.shape  # [K=2, B, 1, H, W]
    ```
    """

    method = "gradcam"

    def __init__(
        self,
        model,
        layer: str | Sequence[str] | None = None,
        scheduler=None,
        target: ExplanationTarget | Callable | None = None,
        weighting: str = "gradcam",
    ):
        if weighting not in CAM_WEIGHTINGS:
            raise ValueError(f"`weighting` must be one of {CAM_WEIGHTINGS}, got {weighting!r}.")
        super().__init__(model, scheduler, target)
        self.weighting = weighting
        modules = {n: m for n, m in self.unet.named_modules() if n}
        preset = layer is None or (isinstance(layer, str) and layer in GRADCAM_LAYER_PRESETS)
        if preset:
            self.layers = GRADCAM_LAYER_PRESETS[layer or "all_blocks"](self.unet)
            if not self.layers:
                raise ValueError(f"{type(self.unet).__name__} has no down/mid/up blocks; pass `layer=` explicitly.")
        else:
            self.layers = resolve_module_names(modules, [layer] if isinstance(layer, str) else list(layer), "layer")
        if weighting == "gradcam":
            self.layers = _drop_vanishing(self.unet, self.layers, preset)  # `output_block` keeps nothing: refused
        self._tensor_output: dict[str, bool] = {}

    def _uses_captum(self, x: torch.Tensor, forward, extras) -> bool:
        """Captum fits one layer whose forward output is a plain tensor (probed once with a no-grad forward)."""
        if len(self.layers) != 1 or self.weighting != "gradcam":
            return False
        name = self.layers[0]
        if name not in self._tensor_output:
            seen: dict[str, bool] = {}

            def probe(module, args, output) -> None:  # returns None: a forward hook must not replace the output
                seen.setdefault("tensor", torch.is_tensor(output))

            module = dict(self.unet.named_modules())[name]
            handle = module.register_forward_hook(probe)
            try:
                with torch.no_grad():
                    forward(x[:1], *[e[:1] for e in extras])
            finally:
                handle.remove()
            self._tensor_output[name] = seen.get("tensor", False)
        return self._tensor_output[name]

    def attribute(
        self,
        inputs,
        timesteps: int | Sequence[int] | None = None,
        target: ExplanationTarget | Callable | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        target_inputs: torch.Tensor | None = None,
        relu_attributions: bool = False,
    ) -> ExplanationResult:
        r"""
        Args:
            inputs ([`Trace`] or `torch.Tensor`): a trace (its recorded $x_t$) or a batch $x_t$ `[B, C, H, W]`.
            timesteps (`int` or `list[int]`, *optional*): scheduler timesteps to explain (default: every recorded
                step of a trace; required for a tensor).
            target (*optional*): overrides the target bound in the constructor.
            encoder_hidden_states (`torch.Tensor`, *optional*): text conditioning of a `UNet2DConditionModel`.
            class_labels (`torch.Tensor`, *optional*): class labels of a class-conditional UNet.
            target_inputs (`torch.Tensor`, *optional*): per-sample inputs of the target's `fn` ([`ExplanationTarget`]).
            relu_attributions (`bool`, *optional*, defaults to `False`): apply the paper's ReLU (captum's default
                is off: negative evidence stays visible).

        Returns:
            [`ExplanationResult`] with `maps` `[K, B, 1, H, W]` and `metadata["per_layer"]` (`name → [K, B, 1, h, w]`).
        """
        target = self.target if target is None else resolve_target(target)
        steps = self._steps(inputs, timesteps, target)
        if steps[0].sample.ndim not in _MODES_BY_NDIM:
            raise ValueError(
                f"GradCAM maps layer activations back onto the sample's spatial axes; samples of shape "
                f"{tuple(steps[0].sample.shape)} have none (table rows): use DenoiserAttribution or DenoiserShap."
            )
        forward_fn = self.forward_function(target)
        per_layer: dict[str, list[torch.Tensor]] = {n: [] for n in self.layers}
        combined = []
        with frozen_parameters(self.unet):
            for step in progress(steps, desc="GradCAM"):
                x = step.sample
                cond = self._conditioning(encoder_hidden_states, class_labels, x.shape[0], target_inputs)
                forward = forward_fn.bind(["sample"], list(cond), step.timestep)
                extras = tuple(cond.values())
                if self._uses_captum(x, forward, extras):
                    module = dict(self.unet.named_modules())[self.layers[0]]
                    with torch.enable_grad():
                        cam = LayerGradCam(forward, module).attribute(
                            x.detach().requires_grad_(True), additional_forward_args=extras or None
                        )
                    cams = {self.layers[0]: cam.detach()}
                else:
                    cams = grad_cam(forward, self.unet, self.layers, x, extras, False, self.weighting)
                cams = {name: _per_sample(cam, x.shape[0], relu_attributions) for name, cam in cams.items()}
                ups = []
                for name, cam in cams.items():
                    per_layer[name].append(cam.float().cpu())
                    up = LayerAttribution.interpolate(cam.float(), tuple(x.shape[2:]), _MODES[x.ndim - 2])
                    scale = up.abs().flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, *[1] * (up.ndim - 1))
                    ups.append(up / scale)
                combined.append(torch.stack(ups).mean(0).cpu())
        maps = torch.stack(combined)
        return ExplanationResult(
            method=self.method,
            attributions=maps,
            maps=maps,
            timesteps=[s.timestep for s in steps],
            step_indices=[s.step_index for s in steps],
            metadata={
                "layers": list(self.layers),
                "weighting": self.weighting,
                "per_layer": {n: torch.stack(v) for n, v in per_layer.items()},
            },
            feature_names=self.feature_names,
        )

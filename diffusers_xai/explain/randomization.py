r"""Does a map depend on what the model learned? Model randomisation (Adebayo et al. 2018), cascading and full."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = [
    "RandomizationCheck",
    "SanityCheckResult",
    "cascade_stages",
    "cascading_randomization",
    "map_similarity",
    "model_randomization_check",
    "randomize_model",
    "spearman_per_map",
]

logger = logging.getLogger(__name__)

_RANDOMIZATION_SEED_OFFSET = 0x5EED_0FF5E7


def randomize_model(model: torch.nn.Module, seed: int = 0, modules: Sequence[str] | None = None) -> torch.nn.Module:
    r"""
    A deep copy of `model` with the weights of `modules` (dotted names, each with all its submodules; default: every
    weight — Adebayo et al.'s "full" randomisation) re-initialised.

    Every submodule with `reset_parameters()` (convolutions, linear layers, norms, embeddings) is reset to its
    constructor's initialisation; any parameter such a reset does not reach is drawn from $\mathcal{N}(0, 0.02^2)$.
    The original model is untouched. The RNG is seeded with `seed` plus a fixed offset: a model built right after
    `torch.manual_seed(seed)` (as test models are) would otherwise get its own weights back, layer for layer.
    """
    clone = copy.deepcopy(model)
    named = dict(clone.named_modules())
    if modules is None:
        roots = [clone]
    else:
        unknown = [m for m in modules if m not in named]
        if unknown:
            raise ValueError(f"Modules {unknown} are not in {type(model).__name__}; pick names from named_modules().")
        roots = [named[m] for m in modules]
    reached: set[int] = set()
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # leaves the caller's CPU RNG state alone
        torch.manual_seed(_RANDOMIZATION_SEED_OFFSET + seed)
        for root in roots:
            for module in root.modules():
                if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
                    module.reset_parameters()
                    reached.update(id(p) for p in module.parameters(recurse=False))
        for root in roots:
            for p in root.parameters():
                if id(p) not in reached:
                    p.normal_(0.0, 0.02)
                    reached.add(id(p))
    return clone


def _blocks(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Top-level children with weights, `ModuleList`/`Sequential` children expanded to their items."""
    out = {}
    for name, child in model.named_children():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)):
            items = {f"{name}.{n}": m for n, m in child.named_children()}
        else:
            items = {name: child}
        out.update({n: m for n, m in items.items() if any(True for _ in m.parameters())})
    return out


def cascade_stages(model: torch.nn.Module, forward, *args, **kwargs) -> list[str]:
    """
    The weighted blocks of `model` ([`_blocks`]) from the output layers inwards: the reverse of the order in which one
    call `forward(*args, **kwargs)` (which runs `model`) first enters them. Blocks the call never runs come last.
    """
    blocks = _blocks(model)
    order: list[str] = []
    handles = [
        m.register_forward_pre_hook(lambda mod, inp, name=n: order.append(name) if name not in order else None)
        for n, m in blocks.items()
    ]
    try:
        with torch.no_grad():
            forward(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return order[::-1] + [n for n in blocks if n not in order]


def _unit(maps: torch.Tensor) -> torch.Tensor:
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


def spearman_per_map(maps_a: torch.Tensor, maps_b: torch.Tensor, absolute: bool = True) -> torch.Tensor:
    """Spearman rank correlation of two stacks of maps `[K, B, *M]` (any map shape), one value per map `[K * B]`."""
    from torchmetrics.functional import spearman_corrcoef

    if maps_a.shape != maps_b.shape:
        raise ValueError(f"Maps must have the same shape, got {tuple(maps_a.shape)} and {tuple(maps_b.shape)}.")
    a = maps_a.float().reshape(maps_a.shape[0] * maps_a.shape[1], -1)
    b = maps_b.float().reshape_as(a)
    if absolute:
        a, b = a.abs(), b.abs()
    return spearman_corrcoef(a.T, b.T).reshape(-1)


def map_similarity(
    maps_a: torch.Tensor, maps_b: torch.Tensor, absolute: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    SSIM and Spearman rank correlation between two stacks of image maps `[..., H, W]`, one value per map.

    As Adebayo et al., maps are compared as absolute values (`absolute=True`); SSIM is computed on maps rescaled to
    [0, 1] (Gaussian window of 11 pixels, or the largest odd size that fits), Spearman on the raw pixel ranks.
    Returns `(ssim [N], spearman [N])` with N the number of maps.
    """
    from torchmetrics.functional import spearman_corrcoef
    from torchmetrics.functional.image import structural_similarity_index_measure

    if maps_a.shape != maps_b.shape:
        raise ValueError(f"Maps must have the same shape, got {tuple(maps_a.shape)} and {tuple(maps_b.shape)}.")
    h, w = maps_a.shape[-2:]
    a = maps_a.float().reshape(-1, 1, h, w)
    b = maps_b.float().reshape(-1, 1, h, w)
    if absolute:
        a, b = a.abs(), b.abs()
    kernel = min(11, h - (1 - h % 2), w - (1 - w % 2))
    if kernel < 3:
        raise ValueError(f"Maps of {h}x{w} pixels are too small for SSIM (at least 3x3).")
    # torchmetrics sizes a Gaussian window from sigma (2 * int(3.5 sigma + 0.5) + 1): 1.5 gives the paper's 11
    sigma = 1.5 if kernel == 11 else (kernel - 1) / 7
    ssim = structural_similarity_index_measure(_unit(a), _unit(b), data_range=1.0, sigma=sigma, reduction="none")
    spearman = spearman_corrcoef(a.flatten(1).T, b.flatten(1).T)
    return ssim.reshape(-1), spearman.reshape(-1)


@dataclass
class SanityCheckResult:
    r"""
    Model-randomisation sanity check of one explainer: similarity of its maps for the trained and a re-initialised
    model. Low values (SSIM and Spearman far below 1) mean the maps depend on what the model learned — the check
    passes; values near 1 mean the method mostly reflects the input or the architecture.

    Args:
        ssim (`float`): mean SSIM over the maps.
        spearman (`float`): mean Spearman rank correlation.
        ssim_per_map, spearman_per_map (`torch.Tensor`): `[K * B]`.
        maps, random_maps (`torch.Tensor`): the compared maps `[K, B, 1, H, W]`.
    """

    ssim: float
    spearman: float
    ssim_per_map: torch.Tensor
    spearman_per_map: torch.Tensor
    maps: torch.Tensor
    random_maps: torch.Tensor

    def summary(self) -> dict:
        def num(v: float):
            return None if math.isnan(v) else round(v, 6)

        return {"ssim": num(self.ssim), "spearman": num(self.spearman)}


def _check_explainer(explainer) -> None:
    if not hasattr(explainer, "with_model") or not hasattr(explainer, "unet"):
        raise TypeError(f"{type(explainer).__name__} is not a denoiser explainer (it needs `.unet` and `with_model`).")


def model_randomization_check(
    explainer,
    inputs,
    init_seed: int = 0,
    absolute: bool = True,
    reference=None,
    **attribute_kwargs,
) -> SanityCheckResult:
    r"""
    Adebayo et al., "Sanity Checks for Saliency Maps", 2018 (https://arxiv.org/abs/1810.03292): explain the same
    image inputs with the trained denoiser and with a copy whose weights are all re-initialised ([`randomize_model`]),
    and report the SSIM and Spearman rank correlation between the two sets of maps ([`map_similarity`]). For the
    cascade (output layers inwards, then fully) with pass/fail on any modality, use [`cascading_randomization`].

    Args:
        explainer: any explainer of this package (it has `.unet`, `with_model()` and `attribute()`).
        inputs: what `explainer.attribute` takes (a [`Trace`] or $x_t$).
        init_seed (`int`, *optional*, defaults to 0): seed of the re-initialisation.
        absolute (`bool`, *optional*, defaults to `True`): compare absolute maps.
        reference ([`ExplanationResult`], *optional*): the trained model's result, if already computed.
        **attribute_kwargs: passed to both `attribute` calls (`timesteps=`, ...).
    """
    _check_explainer(explainer)
    if reference is None:
        reference = explainer.attribute(inputs, **attribute_kwargs)
    randomized = explainer.with_model(randomize_model(explainer.unet, init_seed))
    random_result = randomized.attribute(inputs, **attribute_kwargs)
    ssim, spearman = map_similarity(reference.maps, random_result.maps, absolute=absolute)
    return SanityCheckResult(
        ssim=float(ssim.nanmean()),
        spearman=float(spearman.nanmean()),
        ssim_per_map=ssim,
        spearman_per_map=spearman,
        maps=reference.maps,
        random_maps=random_result.maps,
    )


@dataclass
class RandomizationCheck:
    r"""
    Cascading model randomisation of one explainer ([`cascading_randomization`]).

    Args:
        method (`str`): the explainer's method name.
        stages (`list[str]`): per stage, the innermost block re-initialised so far (cumulative, from the output layers
            inwards); the last stage is `"full"` (every weight re-initialised).
        spearman (`list[float]`): mean Spearman rank correlation of |maps| (trained vs randomised) at each stage.
        spearman_per_map (`torch.Tensor`): `[n_stages, K * B]`.
        timesteps (`list[int]`): the explained timesteps.
        threshold (`float`): the check passes when the Spearman at full randomisation is below it (0.5).
        independence_threshold (`float`): at or above it (0.9) the maps of a fully random model are nearly those of
            the trained one: the target (or method) does not depend on the model (`model_independent`).
    """

    method: str
    stages: list[str]
    spearman: list[float]
    spearman_per_map: torch.Tensor
    timesteps: list[int]
    threshold: float = 0.5
    independence_threshold: float = 0.9
    blocks: dict[str, list[str]] = field(default_factory=dict)

    @property
    def spearman_full(self) -> float:
        return self.spearman[-1]

    @property
    def passed(self) -> bool:
        return not math.isnan(self.spearman_full) and self.spearman_full < self.threshold

    @property
    def model_independent(self) -> bool:
        return not math.isnan(self.spearman_full) and self.spearman_full >= self.independence_threshold

    @property
    def warning(self) -> str | None:
        """A one-line warning for the card when the maps do not depend on the model, else `None`."""
        if not self.model_independent:
            return None
        return (
            f"{self.method}: the maps of a fully randomised model are nearly those of the trained one (Spearman "
            f"{self.spearman_full:.2f} >= {self.independence_threshold}); the explained target does not depend on "
            "the model's weights (e.g. the sum of x0_hat): explain ExplanationTarget(output='model_contribution')."
        )

    def summary(self) -> dict:
        def num(v: float):
            return None if math.isnan(v) else round(v, 6)

        return {
            "stages": list(self.stages),
            "spearman": [num(v) for v in self.spearman],
            "spearman_full": num(self.spearman_full),
            "threshold": self.threshold,
            "passed": self.passed,
            "model_independent": self.model_independent,
            "warning": self.warning,
        }


def _stage_prefixes(order: list[str], max_stages: int | None) -> list[int]:
    """Cumulative stage sizes: 1 .. len(order) blocks, thinned to `max_stages` (keeping the first and full)."""
    sizes = list(range(1, len(order) + 1))
    if max_stages is None or max_stages >= len(sizes) + 1:
        return sizes
    if max_stages < 1:
        raise ValueError(f"`max_stages` must be >= 1, got {max_stages}.")
    if max_stages == 1:
        return []
    keep = max_stages - 1  # the last stage is the full randomisation
    return sorted({sizes[round(i * (len(sizes) - 1) / max(1, keep))] for i in range(keep)})


def cascading_randomization(
    explainer,
    inputs,
    timesteps: int | Sequence[int] | None = None,
    max_stages: int | None = None,
    init_seed: int = 0,
    threshold: float = 0.5,
    independence_threshold: float = 0.9,
    reference_maps: torch.Tensor | None = None,
    **attribute_kwargs,
) -> RandomizationCheck:
    r"""
    Cascading model randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", 2018,
    https://arxiv.org/abs/1810.03292).

    Protocol: find the denoiser's weighted blocks (top-level layers, `down_blocks.i` / `up_blocks.i` / `blocks.i`
    items) in the order one forward pass enters them ([`cascade_stages`]); re-initialise them cumulatively from the
    output layers inwards (stage 1: the output layer, stage 2: it and the block before, ...) and finally every weight
    ([`randomize_model`]); explain the same inputs at each stage and compare the maps with the trained model's by the
    Spearman rank correlation of their absolute values, per map ([`spearman_per_map`]). The check passes when the mean
    Spearman at full randomisation is below `threshold` (0.5): the map changes when what the model learned is
    destroyed. At or above `independence_threshold` (0.9) the result is flagged `model_independent`, with a warning:
    the explained target does not depend on the weights (the sum of $\hat{x}_0$ is dominated by $x_t/\sqrt{\bar
    \alpha_t}$).

    Args:
        explainer: any explainer of this package (`.unet`, `with_model()`, `attribute()`), for images, rows or windows.
        inputs: what `explainer.attribute` takes (a [`Trace`] or $x_t$ `[B, *S]`).
        timesteps (*optional*): the explained timesteps (default: every recorded step of a trace).
        max_stages (`int`, *optional*): at most this many stages (evenly spaced over the cascade, always with the
            output layer and the full randomisation); default every block.
        init_seed (`int`, *optional*, defaults to 0): seed of the re-initialisation.
        reference_maps (`torch.Tensor`, *optional*): the trained model's maps at these timesteps, if computed.
        **attribute_kwargs: passed to every `attribute` call (`class_labels=`, `n_steps=`, ...).

    Returns:
        [`RandomizationCheck`].
    """
    _check_explainer(explainer)
    steps = explainer._steps(inputs, timesteps, explainer.target)
    timesteps = [s.timestep for s in steps]
    if reference_maps is None:
        reference_maps = explainer.attribute(inputs, timesteps=timesteps, **attribute_kwargs).maps
    order = _forward_order(explainer, steps[0], attribute_kwargs)
    stages, blocks, rhos = [], {}, []
    for size in [*_stage_prefixes(order, max_stages), None]:
        modules = None if size is None else order[:size]
        randomized = explainer.with_model(randomize_model(explainer.unet, init_seed, modules))
        maps = randomized.attribute(inputs, timesteps=timesteps, **attribute_kwargs).maps
        name = "full" if size is None else order[size - 1]
        stages.append(name)
        blocks[name] = list(order) if size is None else list(modules)
        rhos.append(spearman_per_map(reference_maps, maps))
    per_map = torch.stack(rhos)
    check = RandomizationCheck(
        method=getattr(explainer, "method", type(explainer).__name__),
        stages=stages,
        spearman=[float(r.nanmean()) for r in per_map],
        spearman_per_map=per_map,
        timesteps=timesteps,
        threshold=threshold,
        independence_threshold=independence_threshold,
        blocks=blocks,
    )
    if check.warning:
        logger.warning(check.warning)
    return check


def _forward_order(explainer, step, attribute_kwargs: dict) -> list[str]:
    """[`cascade_stages`] of the explainer's denoiser, run on the first explained sample."""
    cond = explainer._conditioning(
        attribute_kwargs.get("encoder_hidden_states"), attribute_kwargs.get("class_labels"), step.sample.shape[0]
    )
    cond = {k: v[:1] for k, v in cond.items() if k != "target_inputs"}
    return cascade_stages(explainer.unet, explainer.unet, step.sample[:1], step.timestep, **cond)

r"""Can a map be trusted? Deletion/insertion curves (Petsiuk 2018) and model randomisation (Adebayo 2018)."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "FaithfulnessResult",
    "SanityCheckResult",
    "deletion_insertion",
    "map_similarity",
    "model_randomization_check",
    "perturbation_curve",
    "random_map_curves",
    "randomize_model",
]

logger = logging.getLogger(__name__)


def _pixel_order(attribution_map: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Pixels sorted from most to least important, `[B, H*W]` (a map `[B, 1 or C, H, W]`, channels summed)."""
    if attribution_map.ndim == 3:
        attribution_map = attribution_map.unsqueeze(1)
    if (
        attribution_map.ndim != 4
        or attribution_map.shape[0] != inputs.shape[0]
        or attribution_map.shape[-2:] != inputs.shape[-2:]
    ):
        raise ValueError(
            f"The attribution map has shape {tuple(attribution_map.shape)} but the inputs are {tuple(inputs.shape)}; "
            f"pass one map [B, 1, H, W] per input."
        )
    scores = attribution_map.float().sum(dim=1).flatten(1)
    return scores.argsort(dim=1, descending=True, stable=True)


def perturbation_curve(
    forward_func: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    attribution_map: torch.Tensor,
    mode: Literal["deletion", "insertion"] = "deletion",
    baseline: float | torch.Tensor = 0.0,
    n_steps: int = 16,
    additional_forward_args: Sequence = (),
    batch_size: int = 64,
) -> torch.Tensor:
    r"""
    The raw score $f$ of the inputs as the most important pixels are deleted (set to `baseline`) or inserted
    (into the baseline), at fractions $0, 1/n, \dots, 1$ of the pixels. Returns `[B, n_steps + 1]`.

    Args:
        forward_func (`Callable`): `f(inputs, *additional_forward_args) -> [B]`.
        inputs (`torch.Tensor`): `[B, C, H, W]`.
        attribution_map (`torch.Tensor`): `[B, 1 or C, H, W]`; higher = more important.
        mode (`"deletion"` or `"insertion"`).
        baseline (`float` or `torch.Tensor` broadcastable to the inputs): the "removed" value.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"`mode` must be 'deletion' or 'insertion', got {mode!r}.")
    if n_steps < 1:
        raise ValueError(f"`n_steps` must be >= 1, got {n_steps}.")
    order = _pixel_order(attribution_map, inputs).to(inputs.device)
    b, c, h, w = inputs.shape
    base = torch.as_tensor(baseline, dtype=inputs.dtype, device=inputs.device).expand_as(inputs)
    counts = [round(k * h * w / n_steps) for k in range(n_steps + 1)]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(h * w, device=order.device).expand(b, -1))  # rank of every pixel
    scores = torch.empty(b, n_steps + 1)
    batches = []
    for i in range(b):
        masks = torch.stack([(ranks[i] < m).view(1, h, w) for m in counts])  # [n+1, 1, H, W]
        if mode == "deletion":
            batches.append(torch.where(masks, base[i], inputs[i]))
        else:
            batches.append(torch.where(masks, inputs[i], base[i]))
    perturbed = torch.cat(batches)  # [B * (n+1), C, H, W]
    extras = [a.repeat_interleave(n_steps + 1, dim=0) if torch.is_tensor(a) else a for a in additional_forward_args]
    outs = []
    with torch.no_grad():
        for start in range(0, perturbed.shape[0], batch_size):
            chunk = slice(start, start + batch_size)
            outs.append(
                forward_func(perturbed[chunk], *[e[chunk] if torch.is_tensor(e) else e for e in extras]).float().cpu()
            )
    scores = torch.cat(outs).view(b, n_steps + 1)
    return scores


@dataclass
class FaithfulnessResult:
    r"""
    Deletion and insertion curves of an attribution map and of random maps.

    Curves are normalised per sample to $(f - f_{\text{baseline}}) / |f_{\text{input}} - f_{\text{baseline}}|$,
    so they run from 1 to 0 (deletion) and 0 to 1 (insertion) whatever the scale of the target — or from -1 to 0
    and 0 to -1 when the baseline scores above the input (a denoiser target can go either way). In both cases a
    faithful map (positive = raises the target) has a *lower* deletion AUC and a *higher* insertion AUC than random
    maps: `deletion_gain` and `insertion_gain` > 0.

    Args:
        fractions (`torch.Tensor`): `[n+1]` fractions of pixels perturbed.
        deletion, insertion (`torch.Tensor`): normalised curves `[B, n+1]`.
        deletion_raw, insertion_raw (`torch.Tensor`): raw scores `[B, n+1]`.
        deletion_auc, insertion_auc (`torch.Tensor`): `[B]`.
        random_deletion_auc, random_insertion_auc (`torch.Tensor`): mean over the random maps, `[B]`.
        random_deletion, random_insertion (`torch.Tensor`): normalised mean random curves `[B, n+1]`.
    """

    fractions: torch.Tensor
    deletion: torch.Tensor
    insertion: torch.Tensor
    deletion_raw: torch.Tensor
    insertion_raw: torch.Tensor
    deletion_auc: torch.Tensor
    insertion_auc: torch.Tensor
    random_deletion: torch.Tensor
    random_insertion: torch.Tensor
    random_deletion_auc: torch.Tensor
    random_insertion_auc: torch.Tensor

    @property
    def deletion_gain(self) -> torch.Tensor:
        return self.random_deletion_auc - self.deletion_auc

    @property
    def insertion_gain(self) -> torch.Tensor:
        return self.insertion_auc - self.random_insertion_auc

    def summary(self) -> dict:
        """Means over the batch, as JSON-able floats (`None` for an undefined AUC)."""

        def num(t: torch.Tensor):
            v = float(t.float().nanmean()) if t.numel() else float("nan")
            return None if math.isnan(v) else round(v, 6)

        return {
            "deletion_auc": num(self.deletion_auc),
            "random_deletion_auc": num(self.random_deletion_auc),
            "insertion_auc": num(self.insertion_auc),
            "random_insertion_auc": num(self.random_insertion_auc),
            "deletion_gain": num(self.deletion_gain),
            "insertion_gain": num(self.insertion_gain),
        }


def _normalize(raw: torch.Tensor, f_input: torch.Tensor, f_base: torch.Tensor) -> torch.Tensor:
    # divide by |span|, not span: when the baseline scores *above* the input, dividing by a negative span would flip
    # the curves and make a faithful map look worse than random
    span = (f_input - f_base).unsqueeze(1).abs()
    out = (raw - f_base.unsqueeze(1)) / span
    degenerate = span.abs().squeeze(1) < 1e-12
    if degenerate.any():
        logger.warning(
            "The target does not change between the input and the baseline for %d sample(s): their deletion and "
            "insertion AUCs are undefined (NaN).",
            int(degenerate.sum()),
        )
        out[degenerate] = float("nan")
    return out


def random_map_curves(
    forward_func: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    n_random: int = 8,
    seed: int = 0,
    baseline: float | torch.Tensor = 0.0,
    n_steps: int = 16,
    additional_forward_args: Sequence = (),
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Raw deletion and insertion curves `[n_random, B, n_steps + 1]` of `n_random` uniformly random maps (seeded).
    They depend on the inputs only, not on the map being scored: compute them once per input and pass them to
    [`deletion_insertion`] for every method.
    """
    if n_random < 1:
        raise ValueError(f"`n_random` must be >= 1, got {n_random}.")
    kwargs = {
        "baseline": baseline,
        "n_steps": n_steps,
        "additional_forward_args": additional_forward_args,
        "batch_size": batch_size,
    }
    generator = torch.Generator().manual_seed(seed)
    b, _, h, w = inputs.shape
    deletion, insertion = [], []
    for _ in range(n_random):
        random_map = torch.rand((b, 1, h, w), generator=generator).to(inputs.device)
        deletion.append(perturbation_curve(forward_func, inputs, random_map, "deletion", **kwargs))
        insertion.append(perturbation_curve(forward_func, inputs, random_map, "insertion", **kwargs))
    return torch.stack(deletion), torch.stack(insertion)


def deletion_insertion(
    forward_func: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    attribution_map: torch.Tensor,
    baseline: float | torch.Tensor = 0.0,
    n_steps: int = 16,
    n_random: int = 8,
    seed: int = 0,
    additional_forward_args: Sequence = (),
    batch_size: int = 64,
    random_curves: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> FaithfulnessResult:
    r"""
    Deletion and insertion curves and AUCs of `attribution_map`, against `n_random` uniformly random maps.

    Petsiuk et al., "RISE", 2018 (https://arxiv.org/abs/1806.07421): delete the most important pixels first and
    watch the score fall (a low area under the curve is good); insert them into a blank input and watch it rise
    (a high area is good). Departure from the paper: the score is any scalar target (here, the denoiser's), so the
    curves are normalised by the input's and the baseline's scores, and the "blank" is `baseline` (0 = the mean
    of $x_t$) rather than a blurred image. `random_curves` (from [`random_map_curves`] with the same inputs and
    settings) skips recomputing the random baseline when several maps of the same input are scored.

    Example:

    ```py
    >>> f = DenoiserForward(pipe.unet, pipe.scheduler, ExplanationTarget()).bind(["sample"], [], t)
    >>> res = deletion_insertion(f, x_t, gradcam.maps[0])
    >>> res.deletion_auc, res.random_deletion_auc
    ```
    """
    kwargs = {
        "baseline": baseline,
        "n_steps": n_steps,
        "additional_forward_args": additional_forward_args,
        "batch_size": batch_size,
    }
    deletion_raw = perturbation_curve(forward_func, inputs, attribution_map, "deletion", **kwargs)
    insertion_raw = perturbation_curve(forward_func, inputs, attribution_map, "insertion", **kwargs)
    if random_curves is None:
        random_curves = random_map_curves(forward_func, inputs, n_random, seed, **kwargs)
    if random_curves[0].shape[1:] != deletion_raw.shape:
        raise ValueError(
            f"`random_curves` are {tuple(random_curves[0].shape)} but this input needs [n_random, "
            f"{deletion_raw.shape[0]}, {deletion_raw.shape[1]}]; compute them with the same inputs and n_steps."
        )
    f_input, f_base = deletion_raw[:, 0], deletion_raw[:, -1]
    fractions = torch.linspace(0, 1, n_steps + 1)
    deletion = _normalize(deletion_raw, f_input, f_base)
    insertion = _normalize(insertion_raw, f_input, f_base)
    random_deletion = _normalize(random_curves[0].mean(0), f_input, f_base)
    random_insertion = _normalize(random_curves[1].mean(0), f_input, f_base)

    def auc(curve: torch.Tensor) -> torch.Tensor:
        return torch.trapezoid(curve, fractions, dim=-1)

    return FaithfulnessResult(
        fractions=fractions,
        deletion=deletion,
        insertion=insertion,
        deletion_raw=deletion_raw,
        insertion_raw=insertion_raw,
        deletion_auc=auc(deletion),
        insertion_auc=auc(insertion),
        random_deletion=random_deletion,
        random_insertion=random_insertion,
        random_deletion_auc=auc(random_deletion),
        random_insertion_auc=auc(random_insertion),
    )


# ---- model randomisation sanity check ----


_RANDOMIZATION_SEED_OFFSET = 0x5EED_0FF5E7


def randomize_model(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    r"""
    A deep copy of `model` with every weight re-initialised (Adebayo et al.'s "full" randomisation).

    Every submodule with `reset_parameters()` (convolutions, linear layers, norms, embeddings) is reset to its
    constructor's initialisation; any parameter such a reset does not reach is drawn from $\mathcal{N}(0, 0.02^2)$.
    The original model is untouched. The RNG is seeded with `seed` plus a fixed offset: a model built right after
    `torch.manual_seed(seed)` (as test models are) would otherwise get its own weights back, layer for layer.
    """
    clone = copy.deepcopy(model)
    reached: set[int] = set()
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # leaves the caller's CPU RNG state alone
        torch.manual_seed(_RANDOMIZATION_SEED_OFFSET + seed)
        for module in clone.modules():
            if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
                module.reset_parameters()
                reached.update(id(p) for p in module.parameters(recurse=False))
        for p in clone.parameters():
            if id(p) not in reached:
                p.normal_(0.0, 0.02)
    return clone


def _unit(maps: torch.Tensor) -> torch.Tensor:
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


def map_similarity(
    maps_a: torch.Tensor, maps_b: torch.Tensor, absolute: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    SSIM and Spearman rank correlation between two stacks of maps `[..., H, W]`, one value per map.

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
    inputs with the trained denoiser and with a copy whose weights are re-initialised ([`randomize_model`]), and
    report the SSIM and Spearman rank correlation between the two sets of maps ([`map_similarity`]).

    Args:
        explainer: any explainer of this package (it has `.unet`, `with_model()` and `attribute()`).
        inputs: what `explainer.attribute` takes (a [`Trace`] or $x_t$).
        init_seed (`int`, *optional*, defaults to 0): seed of the re-initialisation.
        absolute (`bool`, *optional*, defaults to `True`): compare absolute maps.
        reference ([`ExplanationResult`], *optional*): the trained model's result, if already computed.
        **attribute_kwargs: passed to both `attribute` calls (`timesteps=`, ...).
    """
    if not hasattr(explainer, "with_model") or not hasattr(explainer, "unet"):
        raise TypeError(f"{type(explainer).__name__} is not a denoiser explainer (it needs `.unet` and `with_model`).")
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

r"""Does a map point at what the target reads? Deletion/insertion curves (Petsiuk et al. 2018) that fit diffusion."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from .randomization import (  # noqa: F401  (re-exported: older imports name them from here)
    SanityCheckResult,
    map_similarity,
    model_randomization_check,
    randomize_model,
)

__all__ = [
    "FaithfulnessResult",
    "SanityCheckResult",
    "deletion_insertion",
    "diffused_baseline",
    "map_similarity",
    "model_randomization_check",
    "perturbation_curve",
    "perturbation_curves",
    "random_map_curves",
    "randomize_model",
]

logger = logging.getLogger(__name__)

Mode = Literal["deletion", "insertion"]


def diffused_baseline(
    inputs: torch.Tensor,
    alpha_bar_t: float,
    x0: float | torch.Tensor = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""
    A draw of $q(x_t \mid x_0) = \mathcal{N}(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t) I)$ for a baseline $x_0$
    (default 0: a mid-grey image, a mean row, a flat window), shaped like `inputs` `[B, *S]`: the value a deleted
    pixel / feature / time point takes at the step's noise level, so a perturbed $x_t$ stays in the distribution the
    denoiser was trained on (setting it to 0 is out of distribution at every noise level).
    """
    noise = torch.randn(inputs.shape, generator=generator, dtype=torch.float32).to(inputs.device)
    x0 = torch.as_tensor(x0, dtype=torch.float32, device=inputs.device)
    return (alpha_bar_t**0.5 * x0 + (1 - alpha_bar_t) ** 0.5 * noise).to(inputs.dtype)


def _unit_scores(attribution_map: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """
    Per-unit scores `[B, N]` of a map and the shape a unit mask takes in one sample. Units are pixels of images
    (map `[B, 1 or C, H, W]` or `[B, H, W]`, channels summed), time points of windows (`[B, 1 or C, L]` or `[B, L]`)
    and features of rows (`[B, F]`); a unit is perturbed in every channel at once.
    """
    s = tuple(inputs.shape[1:])
    core = s if len(s) == 1 else s[1:]
    m = tuple(attribution_map.shape)
    allowed = [(inputs.shape[0], *core)]
    if len(s) > 1:
        allowed += [(inputs.shape[0], 1, *core), (inputs.shape[0], s[0], *core)]
    if m not in allowed:
        raise ValueError(
            f"The attribution map has shape {m} but the inputs are {tuple(inputs.shape)}; pass one map "
            f"{list(allowed[min(1, len(allowed) - 1)])} per input."
        )
    scores = attribution_map.float()
    if scores.ndim == inputs.ndim and len(s) > 1:
        scores = scores.sum(dim=1)
    return scores.flatten(1), core if len(s) == 1 else (1, *core)


def perturbation_curves(
    forward_func: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    attribution_maps: torch.Tensor,
    modes: Sequence[Mode] = ("deletion", "insertion"),
    baseline: float | torch.Tensor = 0.0,
    n_steps: int = 16,
    additional_forward_args: Sequence = (),
    batch_size: int = 64,
) -> dict[str, torch.Tensor]:
    r"""
    Deletion and/or insertion curves of R maps of the same inputs, every perturbed input evaluated in batches of
    `batch_size` (one forward per batch, not per input): `{mode: [R, B, n_steps + 1]}`.

    Args:
        forward_func (`Callable`): `f(inputs, *additional_forward_args) -> [B]`.
        inputs (`torch.Tensor`): `[B, *S]`.
        attribution_maps (`torch.Tensor`): `[R, B, *M]`, each map as [`perturbation_curve`] takes it.
        baseline (`float` or `torch.Tensor` broadcastable to the inputs): the value of a removed unit.
    """
    bad = [m for m in modes if m not in ("deletion", "insertion")]
    if bad:
        raise ValueError(f"`mode` must be 'deletion' or 'insertion', got {bad[0]!r}.")
    if n_steps < 1:
        raise ValueError(f"`n_steps` must be >= 1, got {n_steps}.")
    b = inputs.shape[0]
    scored = [_unit_scores(m, inputs) for m in attribution_maps]
    unit_shape = scored[0][1]
    scores = torch.stack([sc for sc, _ in scored]).to(inputs.device)  # [R, B, N]
    n_units = scores.shape[-1]
    order = scores.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(-1, order, torch.arange(n_units, device=order.device).expand_as(order))
    # the curves' ends are the same two inputs for every map and mode (nothing perturbed: x; everything: the
    # baseline), so they are evaluated once and only the n - 1 interior fractions per curve are perturbed
    counts = torch.tensor([round(k * n_units / n_steps) for k in range(1, n_steps)], device=inputs.device)
    masks = ranks.unsqueeze(2) < counts.view(1, 1, -1, 1)  # [R, B, n-1, N]: the first `count` units
    masks = masks.view(*masks.shape[:3], *unit_shape)
    x = inputs.unsqueeze(1)  # [B, 1, *S]
    base = torch.as_tensor(baseline, dtype=inputs.dtype, device=inputs.device).expand_as(inputs).unsqueeze(1)
    batches = [inputs, base[:, 0]]
    for mode in modes:
        kept = torch.where(masks, base, x) if mode == "deletion" else torch.where(masks, x, base)
        batches.append(kept.flatten(0, 2))
    perturbed = torch.cat(batches)  # [2B + modes * R * B * (n-1), *S]
    interior = torch.arange(b).view(1, 1, b, 1).expand(len(modes), len(attribution_maps), b, n_steps - 1)
    sample_index = torch.cat([torch.arange(b), torch.arange(b), interior.reshape(-1)])
    outs = []
    with torch.no_grad():
        for start in range(0, perturbed.shape[0], batch_size):
            idx = sample_index[start : start + batch_size]
            extras = [a[idx.to(a.device)] if torch.is_tensor(a) else a for a in additional_forward_args]
            outs.append(forward_func(perturbed[start : start + batch_size], *extras).float().cpu())
    scores_out = torch.cat(outs)
    f_x, f_base = (v.view(1, b, 1).expand(len(attribution_maps), b, 1) for v in scores_out[: 2 * b].split(b))
    inner = scores_out[2 * b :].view(len(modes), len(attribution_maps), b, n_steps - 1)
    ends = {"deletion": (f_x, f_base), "insertion": (f_base, f_x)}
    return {mode: torch.cat([ends[mode][0], inner[i], ends[mode][1]], dim=-1) for i, mode in enumerate(modes)}


def perturbation_curve(
    forward_func: Callable[..., torch.Tensor],
    inputs: torch.Tensor,
    attribution_map: torch.Tensor,
    mode: Mode = "deletion",
    baseline: float | torch.Tensor = 0.0,
    n_steps: int = 16,
    additional_forward_args: Sequence = (),
    batch_size: int = 64,
) -> torch.Tensor:
    r"""
    The raw score $f$ of the inputs as the most important units are deleted (set to `baseline`) or inserted (into
    the baseline), at fractions $0, 1/n, \dots, 1$ of the units. Returns `[B, n_steps + 1]`.

    Args:
        forward_func (`Callable`): `f(inputs, *additional_forward_args) -> [B]`.
        inputs (`torch.Tensor`): `[B, *S]`: images `[B, C, H, W]`, rows `[B, F]`, windows `[B, C, L]`.
        attribution_map (`torch.Tensor`): images `[B, 1 or C, H, W]` (pixels), windows `[B, 1 or C, L]` (time
            points), rows `[B, F]` (features); higher = more important.
        mode (`"deletion"` or `"insertion"`).
        baseline (`float` or `torch.Tensor` broadcastable to the inputs): the "removed" value ([`diffused_baseline`]
            for fresh noise at the step's noise level).
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"`mode` must be 'deletion' or 'insertion', got {mode!r}.")
    if attribution_map.ndim == inputs.ndim - 1 and inputs.ndim == 4:
        attribution_map = attribution_map.unsqueeze(1)
    curves = perturbation_curves(
        forward_func, inputs, attribution_map.unsqueeze(0), (mode,), baseline, n_steps, additional_forward_args,
        batch_size,
    )  # fmt: skip
    return curves[mode][0]


@dataclass
class FaithfulnessResult:
    r"""
    Deletion and insertion curves of an attribution map and of random maps, for one step.

    Signed maps (`signed=True`: positive = raises the target): curves are normalised per sample to
    $(f - f_{\text{baseline}}) / s$ with $s$ the range of the mean random deletion curve (at least
    $|f_{\text{input}} - f_{\text{baseline}}|$, which it spans; a map-independent scale that stays away from 0 when
    the input and the baseline happen to score alike), so they run from 1 to 0 (deletion) and 0 to 1 (insertion)
    whatever the scale of the target — or from -1 to 0 and 0 to -1 when the baseline scores above the input (a
    denoiser target can go either way). In both cases a faithful map has a *lower* deletion AUC and a *higher*
    insertion AUC than random maps.

    Unsigned (magnitude) maps (`signed=False`: "this unit matters", no direction): the curves are the size of the
    change from the input's score, $|f - f_{\text{input}}| / s$, with $s$ the range of the mean random curve of the
    same kind; deletion runs from 0 up to about 1 and insertion from about 1 down to 0, and a faithful map has a
    *higher* deletion AUC (the score moves away fastest) and a *lower* insertion AUC (it comes back fastest).

    Either way `deletion_gain` and `insertion_gain` > 0 means better than random maps.

    Args:
        fractions (`torch.Tensor`): `[n+1]` fractions of units perturbed.
        deletion, insertion (`torch.Tensor`): normalised curves `[B, n+1]`.
        deletion_raw, insertion_raw (`torch.Tensor`): raw scores $f$ `[B, n+1]`.
        deletion_auc, insertion_auc (`torch.Tensor`): `[B]`.
        random_deletion_auc, random_insertion_auc (`torch.Tensor`): of the mean random curves, `[B]`.
        random_deletion, random_insertion (`torch.Tensor`): normalised mean random curves `[B, n+1]`.
        signed (`bool`): which protocol scored the map (see above).
        signed_result ([`FaithfulnessResult`], *optional*): for an unsigned map, the same curves scored as if the map
            were signed, kept for transparency (not the map's verdict).
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
    signed: bool = True
    signed_result: FaithfulnessResult | None = field(default=None, repr=False)

    @property
    def protocol(self) -> str:
        r"""`"signed"` (the raw score $f$) or `"magnitude"` ($|f - f_{\text{input}}|$)."""
        return "signed" if self.signed else "magnitude"

    @property
    def deletion_gain(self) -> torch.Tensor:
        gain = self.random_deletion_auc - self.deletion_auc
        return gain if self.signed else -gain

    @property
    def insertion_gain(self) -> torch.Tensor:
        gain = self.insertion_auc - self.random_insertion_auc
        return gain if self.signed else -gain

    def summary(self) -> dict:
        """Means over the batch, as JSON-able floats (`None` for an undefined AUC); `protocol` names the scoring,
        and an unsigned map also reports the signed protocol's gains (`signed_deletion_gain`, ...)."""

        def num(t: torch.Tensor):
            v = float(t.float().nanmean()) if t.numel() else float("nan")
            return None if math.isnan(v) else round(v, 6)

        out = {
            "protocol": self.protocol,
            "deletion_auc": num(self.deletion_auc),
            "random_deletion_auc": num(self.random_deletion_auc),
            "insertion_auc": num(self.insertion_auc),
            "random_insertion_auc": num(self.random_insertion_auc),
            "deletion_gain": num(self.deletion_gain),
            "insertion_gain": num(self.insertion_gain),
        }
        if self.signed_result is not None:
            out["signed_deletion_gain"] = num(self.signed_result.deletion_gain)
            out["signed_insertion_gain"] = num(self.signed_result.insertion_gain)
        return out


def _normalize(raw: torch.Tensor, f_base: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    out = (raw - f_base.unsqueeze(1)) / scale.unsqueeze(1)
    degenerate = scale < 1e-12
    if degenerate.any():
        logger.warning(
            "The target does not change between the input and the baseline for %d sample(s): their deletion and "
            "insertion AUCs are undefined (NaN).",
            int(degenerate.sum()),
        )
        out[degenerate] = float("nan")
    return out


def _random_maps(inputs: torch.Tensor, n_random: int, seed: int) -> torch.Tensor:
    """`[n_random, B, *M]` uniform random maps (one unit-shaped map per input), seeded."""
    s = tuple(inputs.shape[1:])
    shape = (n_random, inputs.shape[0], *(s if len(s) == 1 else (1, *s[1:])))
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)).to(inputs.device)


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
    Raw deletion and insertion curves `[n_random, B, n_steps + 1]` of `n_random` uniformly random maps (seeded), all
    perturbed inputs batched together. They depend on the inputs and the baseline only, not on the map being scored:
    compute them once per input and pass them to [`deletion_insertion`] for every method.
    """
    if n_random < 1:
        raise ValueError(f"`n_random` must be >= 1, got {n_random}.")
    curves = perturbation_curves(
        forward_func, inputs, _random_maps(inputs, n_random, seed), ("deletion", "insertion"), baseline, n_steps,
        additional_forward_args, batch_size,
    )  # fmt: skip
    return curves["deletion"], curves["insertion"]


def _auc(curve: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    return torch.trapezoid(curve, fractions, dim=-1)


def _result(
    fractions: torch.Tensor, raw: tuple[torch.Tensor, torch.Tensor], curves: list, **kwargs
) -> FaithfulnessResult:
    """A [`FaithfulnessResult`] from the raw deletion/insertion curves and the four normalised curves (deletion,
    insertion, mean random deletion, mean random insertion), with their AUCs; `kwargs`: its `signed` fields."""
    aucs = [_auc(c, fractions) for c in curves]
    return FaithfulnessResult(
        fractions, curves[0], curves[1], raw[0], raw[1], aucs[0], aucs[1], curves[2], curves[3], aucs[2], aucs[3],
        **kwargs,
    )  # fmt: skip


def _signed_result(
    raw: tuple[torch.Tensor, torch.Tensor], random_raw: tuple[torch.Tensor, torch.Tensor], fractions: torch.Tensor
) -> FaithfulnessResult:
    """Scores of the raw $f$: normalised by the range of the mean random deletion curve, from the baseline's score."""
    deletion_raw, insertion_raw = raw
    f_base = deletion_raw[:, -1]
    mean_random_deletion = random_raw[0].mean(0)
    scale = mean_random_deletion.amax(dim=1) - mean_random_deletion.amin(dim=1)
    curves = [_normalize(c, f_base, scale) for c in (deletion_raw, insertion_raw, mean_random_deletion)]
    curves.append(_normalize(random_raw[1].mean(0), f_base, scale))
    return _result(fractions, raw, curves, signed=True)


def _magnitude_result(
    raw: tuple[torch.Tensor, torch.Tensor], random_raw: tuple[torch.Tensor, torch.Tensor], fractions: torch.Tensor
) -> FaithfulnessResult:
    """Scores of $|f - f(x)|$, each random map's curve taken in absolute value before the mean over random maps,
    normalised by the range of the mean random |change| deletion curve (it spans $|f(x) - f_{baseline}|$)."""
    deletion_raw, insertion_raw = raw
    f_input = deletion_raw[:, :1]  # nothing deleted yet: f(x)
    change = [(c - f_input).abs() for c in (deletion_raw, insertion_raw)]
    change += [(c - f_input.unsqueeze(0)).abs().mean(0) for c in random_raw]
    scale = change[2].amax(dim=1) - change[2].amin(dim=1)
    zero = torch.zeros_like(scale)
    curves = [_normalize(c, zero, scale) for c in change]
    return _result(fractions, raw, curves, signed=False, signed_result=_signed_result(raw, random_raw, fractions))


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
    signed: bool = True,
) -> FaithfulnessResult:
    r"""
    Deletion and insertion curves and AUCs of `attribution_map`, against `n_random` uniformly random maps.

    Petsiuk et al., "RISE", 2018 (https://arxiv.org/abs/1806.07421): delete the most important units first and watch
    the score fall (a low area under the curve is good); insert them into a blank input and watch it rise (a high
    area is good). Departures from the paper: the score is any scalar target (here, the denoiser's), so the curves
    are normalised by a map-independent scale (see [`FaithfulnessResult`]); units are pixels, time points or row
    features; and the "blank" is `baseline`: pass [`diffused_baseline`] (fresh noise at the step's noise level, the
    protocol of [`faithfulness_check`]) rather than 0 or a blurred image, which are out of distribution for a
    denoiser. `random_curves` (from [`random_map_curves`] with the same inputs, baseline and settings) skips
    recomputing the random reference when several maps of the same input are scored.

    Signed and unsigned maps (`signed=`, the map's declared claim, [`ExplanationResult.signed`]). RISE's curves
    test a *signed* claim, "positive = raises the score": deleting the top units must lower $f$. A magnitude map
    ($|\partial f/\partial x|$, attention) claims only that $f$ is sensitive to a unit, in either direction; deleting
    a high-magnitude unit may as well raise $f$, and scoring it on the fall of $f$ tests a claim it never made. For
    those maps the curves measure the size of the change from the input's score: AOPC (Samek et al., "Evaluating
    the visualization of what a deep neural network has learned", 2017, https://arxiv.org/abs/1509.06321) averages
    the change $f(x) - f(x^{(k)})$ as units are perturbed most-relevant-first; here that change is taken in absolute
    value, because the map claims no direction. Deletion $d(k) = |f(x \text{ with the top } k \text{ units replaced by
    the baseline}) - f(x)|$ (a faithful map moves $f$ away fastest: a *higher* AUC than random maps) and insertion
    $i(k) = |f(\text{baseline with the top } k \text{ units of } x) - f(x)|$ (it brings $f$ back fastest: a *lower*
    AUC). The random maps are scored the same way (each random curve in absolute value, then averaged), normalised
    by the range of their mean deletion curve, so the gains keep their sign convention (> 0: better than random) and
    the same bootstrap applies. The signed protocol's numbers of an unsigned map stay in `signed_result`.

    Example:

    ```py
    >>> f = DenoiserForward(pipe.unet, pipe.scheduler, ExplanationTarget()).bind(["sample"], [], t)
    >>> res = deletion_insertion(f, x_t, gradcam.maps[0], baseline=diffused_baseline(x_t, alpha_bar_t))
    >>> res.deletion_gain, res.insertion_gain
    ```
    """
    if attribution_map.ndim == inputs.ndim - 1 and inputs.ndim == 4:
        attribution_map = attribution_map.unsqueeze(1)
    kwargs = {"baseline": baseline, "n_steps": n_steps}
    kwargs |= {"additional_forward_args": additional_forward_args, "batch_size": batch_size}
    curves = perturbation_curves(forward_func, inputs, attribution_map.unsqueeze(0), **kwargs)
    raw = (curves["deletion"][0], curves["insertion"][0])
    if random_curves is None:
        random_curves = random_map_curves(forward_func, inputs, n_random, seed, **kwargs)
    if random_curves[0].shape[1:] != raw[0].shape:
        raise ValueError(
            f"`random_curves` are {tuple(random_curves[0].shape)} but this input needs [n_random, "
            f"{raw[0].shape[0]}, {raw[0].shape[1]}]; compute them with the same inputs and n_steps."
        )
    fractions = torch.linspace(0, 1, n_steps + 1)
    return (_signed_result if signed else _magnitude_result)(raw, tuple(random_curves), fractions)

r"""Checks an explanation must pass, over many samples and steps: faithfulness with bootstrap CIs, randomisation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .attributions import alpha_bar
from .faithfulness import FaithfulnessResult, deletion_insertion, diffused_baseline, random_map_curves
from .randomization import RandomizationCheck, cascading_randomization
from .target import resolve_target

__all__ = [
    "MIN_CI_UNITS",
    "ConfidenceInterval",
    "ExplanationChecks",
    "FaithfulnessCheck",
    "bootstrap_ci",
    "faithfulness_check",
    "faithfulness_curves",
    "run_checks",
]

MIN_CI_UNITS = 8  # fewer (sample, step) pairs than this give no usable 95% percentile-bootstrap interval


def _num(v: float) -> float | None:
    return None if v is None or math.isnan(v) else round(float(v), 6)


@dataclass
class ConfidenceInterval:
    r"""A mean with its percentile-bootstrap interval: `estimate` in `[low, high]` at `confidence`, over `n` units."""

    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    n_boot: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def summary(self) -> dict:
        return {
            "mean": _num(self.estimate),
            "ci_low": _num(self.low),
            "ci_high": _num(self.high),
            "confidence": self.confidence,
            "n": self.n,
        }


def bootstrap_ci(
    values: torch.Tensor, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0, what: str = "values"
) -> ConfidenceInterval:
    r"""
    Percentile bootstrap (Efron & Tibshirani 1993) of the mean of `values` (any shape, flattened; NaNs dropped):
    resample the values with replacement `n_boot` times (seeded) and take the $(1-c)/2$ and $(1+c)/2$ quantiles of
    the resampled means. Written by hand (a few lines of torch) rather than `scipy.stats.bootstrap` to keep the
    resampling seeded by a torch generator like every other draw of the checks.

    Raises:
        ValueError: fewer than [`MIN_CI_UNITS`] (8) finite values.
    """
    flat = values.detach().double().reshape(-1)
    flat = flat[torch.isfinite(flat)]
    if flat.numel() < MIN_CI_UNITS:
        raise ValueError(
            f"A {confidence:.0%} bootstrap confidence interval needs at least {MIN_CI_UNITS} {what}, got "
            f"{flat.numel()}; pass more samples (e.g. a trace of a batch of >= {MIN_CI_UNITS}) or more timesteps."
        )
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence}.")
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, flat.numel(), (n_boot, flat.numel()), generator=generator)
    means = flat[idx].mean(dim=1)
    q = torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=torch.float64)
    low, high = torch.quantile(means, q).tolist()
    return ConfidenceInterval(float(flat.mean()), low, high, confidence, int(flat.numel()), n_boot)


@dataclass
class FaithfulnessCheck:
    r"""
    Deletion/insertion faithfulness of one method over samples × steps ([`faithfulness_check`]).

    Args:
        method (`str`): the explainer's method name.
        timesteps (`list[int]`): the K explained timesteps.
        deletion_gain, insertion_gain (`torch.Tensor`): `[K, B]` AUC gains over random maps, per sample and step.
        deletion_ci, insertion_ci ([`ConfidenceInterval`]): the mean gains with their bootstrap intervals.
        baseline (`str`): what a deleted unit becomes (`"noise"`: a draw of $q(x_t | x_0 = 0)$; or a constant).
        per_step (`list[FaithfulnessResult]`): the curves of each step.
        signed (`bool`): the map's claim and so the protocol that scored it: signed ($f$ falls / rises) or
            magnitude ($|f - f(x)|$ grows / shrinks), see [`deletion_insertion`].
        signed_deletion_ci, signed_insertion_ci ([`ConfidenceInterval`], *optional*): for an unsigned map, the
            gains the signed protocol would give, reported for transparency; they do not decide `passed`.
    """

    method: str
    timesteps: list[int]
    deletion_gain: torch.Tensor
    insertion_gain: torch.Tensor
    deletion_ci: ConfidenceInterval
    insertion_ci: ConfidenceInterval
    baseline: str
    per_step: list[FaithfulnessResult] = field(default_factory=list, repr=False)
    signed: bool = True
    signed_deletion_ci: ConfidenceInterval | None = None
    signed_insertion_ci: ConfidenceInterval | None = None

    @property
    def deletion_passed(self) -> bool:
        return self.deletion_ci.low > 0

    @property
    def insertion_passed(self) -> bool:
        return self.insertion_ci.low > 0

    @property
    def passed(self) -> bool:
        """Both gains over random maps are positive with their 95% intervals excluding 0."""
        return self.deletion_passed and self.insertion_passed

    def summary(self) -> dict:
        out = {
            "baseline": self.baseline,
            "timesteps": list(self.timesteps),
            "protocol": "signed" if self.signed else "magnitude",
            "deletion_gain": self.deletion_ci.summary() | {"passed": self.deletion_passed},
            "insertion_gain": self.insertion_ci.summary() | {"passed": self.insertion_passed},
            "passed": self.passed,
        }
        if self.signed_deletion_ci is not None and self.signed_insertion_ci is not None:
            out["signed"] = {
                "deletion_gain": self.signed_deletion_ci.summary(),
                "insertion_gain": self.signed_insertion_ci.summary(),
            }
        return out


def _conditioning(explainer, attribute_kwargs: dict, batch_size: int) -> dict:
    return explainer._conditioning(
        attribute_kwargs.get("encoder_hidden_states"),
        attribute_kwargs.get("class_labels"),
        batch_size,
        attribute_kwargs.get("target_inputs"),
    )


def _unit_map(maps: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """One map per sample for the perturbation: the first map channel (attention maps stack one per token)."""
    return maps if sample.ndim == 2 else maps[:, :1]


def faithfulness_curves(
    explainer,
    inputs,
    timesteps: int | Sequence[int] | None = None,
    result=None,
    baseline: str | float = "noise",
    baseline_x0: float | torch.Tensor = 0.0,
    curve_steps: int = 16,
    n_random: int = 8,
    seed: int = 0,
    batch_size: int = 64,
    random_curves_cache: dict | None = None,
    **attribute_kwargs,
) -> tuple[object, list[FaithfulnessResult]]:
    r"""
    The per-step deletion/insertion curves of [`faithfulness_check`] (same protocol, no bootstrap): returns the
    explained `result` and one [`FaithfulnessResult`] per step, with gains over random maps per sample.

    Args:
        explainer: an explainer of this package (images, rows or windows).
        inputs: a [`Trace`] (its recorded $x_t$) or a batch $x_t$ `[B, *S]` (then `timesteps=` is required).
        timesteps (*optional*): steps to explain and score (default: every recorded step of a trace).
        result ([`ExplanationResult`], *optional*): the maps, if already computed for these inputs and timesteps.
        baseline (`"noise"` or `float`, *optional*, defaults to `"noise"`): a constant replaces units with that value
            instead (the older, out-of-distribution protocol; kept for comparison).
        baseline_x0 (`float` or `torch.Tensor`, *optional*, defaults to 0.0): the $x_0$ the noise baseline diffuses.
        curve_steps (`int`, *optional*, defaults to 16): the curves' resolution (fractions $0, 1/n, \dots, 1$).
        n_random (`int`, *optional*, defaults to 8): random maps per (sample, step).
        seed (`int`, *optional*, defaults to 0): the seeds of the noise draws and random maps.
        batch_size (`int`, *optional*, defaults to 64): perturbed inputs evaluated at a time.
        random_curves_cache (`dict`, *optional*): filled with `{key: (baseline, random curves)}` and reused, so
            several methods explained on the same inputs share the random reference (pass the same dict).
        **attribute_kwargs: passed to `explainer.attribute` (`class_labels=`, `target=`, `n_steps=`, ...).
    """
    steps = explainer._steps(inputs, timesteps, explainer.target)
    timesteps = [s.timestep for s in steps]
    if result is None:
        result = explainer.attribute(inputs, timesteps=timesteps, **attribute_kwargs)
    if list(result.timesteps) != timesteps:
        raise ValueError(f"`result` explains timesteps {result.timesteps}, not {timesteps}; pass matching ones.")
    target = resolve_target(attribute_kwargs.get("target")) if attribute_kwargs.get("target") else explainer.target
    forward = explainer.forward_function(target)
    cond = _conditioning(explainer, attribute_kwargs, steps[0].sample.shape[0])
    extras = tuple(cond.values())
    cache = {} if random_curves_cache is None else random_curves_cache
    per_step = []
    for k, step in enumerate(steps):
        x = step.sample
        f = forward.bind(["sample"], list(cond), step.timestep)
        key = (step.timestep, tuple(x.shape), baseline, curve_steps, n_random, seed)
        if key not in cache:
            if baseline == "noise":
                generator = torch.Generator().manual_seed(seed * 1_000_003 + step.timestep)
                base = diffused_baseline(x, alpha_bar(explainer.scheduler, step.timestep), baseline_x0, generator)
            else:
                base = float(baseline)
            cache[key] = (base, random_map_curves(f, x, n_random, seed, base, curve_steps, extras, batch_size))
        base, curves = cache[key]
        maps = _unit_map(result.maps[k], x).to(x.device)
        signed = getattr(result, "signed", True)  # the map's declared claim: signed, or a magnitude
        per_step.append(
            deletion_insertion(f, x, maps, base, curve_steps, n_random, seed, extras, batch_size, curves, signed)
        )
    return result, per_step


def faithfulness_check(
    explainer,
    inputs,
    timesteps: int | Sequence[int] | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    **curve_kwargs,
) -> FaithfulnessCheck:
    r"""
    Deletion/insertion faithfulness that fits diffusion, over several samples and several steps, with bootstrap CIs.

    Protocol (Petsiuk et al., "RISE", 2018, https://arxiv.org/abs/1806.07421, adapted to denoisers): for every
    explained step $t$ and sample, rank the units of $x_t$ (pixels, time points, row features) by the method's map;
    delete them most-important-first by replacing them with a fresh draw of $q(x_t \mid x_0 = $ `baseline_x0`$)$ at
    that step's $\bar\alpha_t$ ([`diffused_baseline`]; the deleted $x_t$ stays at the step's noise level), or insert
    them into that draw, and evaluate the *same* target the map explains after each $1/n$ of the units. The AUC gains
    over `n_random` seeded random maps (same baseline draw) are computed per (sample, step) ([`faithfulness_curves`]);
    their means get 95% percentile-bootstrap intervals over the samples × steps pairs ([`bootstrap_ci`], seeded). A
    method passes when both intervals lie above 0.

    Args:
        explainer: an explainer of this package (images, rows or windows).
        inputs: a [`Trace`] (its recorded $x_t$) or a batch $x_t$ `[B, *S]` (then `timesteps=` is required).
        timesteps (*optional*): steps to explain and score (default: every recorded step of a trace).
        n_boot, confidence, seed: the bootstrap (and the seeds of the noise draws and random maps).
        **curve_kwargs: the curves' settings and the explainer's arguments, as [`faithfulness_curves`] takes them
            (`result=`, `baseline=`, `baseline_x0=`, `curve_steps=`, `n_random=`, `batch_size=`,
            `random_curves_cache=`, then `class_labels=`, `target=`, `n_steps=`, ...).

    Raises:
        ValueError: fewer than 8 samples × steps (no usable CI): pass a bigger batch or more timesteps.
    """
    steps = explainer._steps(inputs, timesteps, explainer.target)
    units = len(steps) * steps[0].sample.shape[0]
    if units < MIN_CI_UNITS:
        raise ValueError(
            f"faithfulness_check needs at least {MIN_CI_UNITS} samples x steps for a 95% bootstrap CI, got "
            f"{steps[0].sample.shape[0]} sample(s) x {len(steps)} step(s) = {units}; pass a trace of >= 8 samples "
            "(e.g. pipe(batch_size=8, ..., trace=True)) or more `timesteps`."
        )
    result, per_step = faithfulness_curves(explainer, inputs, [s.timestep for s in steps], seed=seed, **curve_kwargs)
    baseline = curve_kwargs.get("baseline", "noise")
    deletion = torch.stack([r.deletion_gain for r in per_step])
    insertion = torch.stack([r.insertion_gain for r in per_step])
    what = "finite (sample, step) gains"
    signed_cis: dict = {}
    if all(r.signed_result is not None for r in per_step):  # an unsigned map: the signed numbers, for transparency
        for name in ("deletion", "insertion"):
            gains = torch.stack([getattr(r.signed_result, f"{name}_gain") for r in per_step])
            offset = 0 if name == "deletion" else 1
            signed_cis[f"signed_{name}_ci"] = bootstrap_ci(gains, n_boot, confidence, seed + offset, what)
    return FaithfulnessCheck(
        method=result.method,
        timesteps=list(result.timesteps),
        deletion_gain=deletion,
        insertion_gain=insertion,
        deletion_ci=bootstrap_ci(deletion, n_boot, confidence, seed, what),
        insertion_ci=bootstrap_ci(insertion, n_boot, confidence, seed + 1, what),
        baseline="noise" if baseline == "noise" else str(float(baseline)),
        per_step=per_step,
        signed=all(r.signed for r in per_step),
        **signed_cis,
    )


@dataclass
class ExplanationChecks:
    r"""
    The checks of one method ([`run_checks`]): what a card or a benchmark prints per method.

    Args:
        method (`str`): the method name.
        faithfulness ([`FaithfulnessCheck`], *optional*): deletion/insertion gains with CIs.
        randomization ([`RandomizationCheck`], *optional*): cascading randomisation Spearman per stage.
        seconds (`dict[str, float]`): wall time of the attribution and of each check.
    """

    method: str
    faithfulness: FaithfulnessCheck | None = None
    randomization: RandomizationCheck | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every check that ran passed."""
        checks = [c for c in (self.faithfulness, self.randomization) if c is not None]
        return bool(checks) and all(c.passed for c in checks)

    @property
    def warnings(self) -> list[str]:
        return [w for w in [self.randomization.warning if self.randomization else None] if w]

    def summary(self) -> dict:
        return {
            "method": self.method,
            "passed": self.passed,
            "faithfulness": self.faithfulness.summary() if self.faithfulness else None,
            "randomization": self.randomization.summary() if self.randomization else None,
            "warnings": self.warnings,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def run_checks(
    explainer,
    inputs,
    timesteps: int | Sequence[int] | None = None,
    faithfulness: bool = True,
    randomization: bool = True,
    randomization_timesteps: Sequence[int] | None = None,
    max_stages: int | None = None,
    seed: int = 0,
    faithfulness_kwargs: dict | None = None,
    random_curves_cache: dict | None = None,
    **attribute_kwargs,
) -> ExplanationChecks:
    r"""
    Explain `inputs` once and run the checks on the maps: [`faithfulness_check`] (deletion/insertion with fresh
    noise, gains over random maps with 95% bootstrap CIs over samples × steps) and [`cascading_randomization`]
    (Spearman of |maps| trained vs randomised, output layers inwards and fully; passes below 0.5), at
    `randomization_timesteps` (default: the same steps; the trained maps are reused).

    Example:

    ```py
    >>> out = pipe(batch_size=8, num_inference_steps=20, trace=True, output_type="pt")
    >>> steps = out.trace.timesteps[[5, 10, 15]].tolist()
    >>> checks = run_checks(DenoiserAttribution(pipe, "saliency"), out.trace, timesteps=steps)
    >>> checks.summary()["faithfulness"]["deletion_gain"]  # {"mean", "ci_low", "ci_high", ..., "passed"}
    ```
    """
    import time

    checks = ExplanationChecks(method=getattr(explainer, "method", type(explainer).__name__))
    start = time.perf_counter()
    steps = explainer._steps(inputs, timesteps, explainer.target)
    timesteps = [s.timestep for s in steps]
    result = explainer.attribute(inputs, timesteps=timesteps, **attribute_kwargs)
    checks.seconds["attribute"] = time.perf_counter() - start
    if faithfulness:
        start = time.perf_counter()
        checks.faithfulness = faithfulness_check(
            explainer, inputs, timesteps, seed=seed, result=result, random_curves_cache=random_curves_cache,
            **(faithfulness_kwargs or {}), **attribute_kwargs,
        )  # fmt: skip
        checks.seconds["faithfulness"] = time.perf_counter() - start
    if randomization:
        start = time.perf_counter()
        chosen = list(randomization_timesteps) if randomization_timesteps is not None else timesteps
        missing = [t for t in chosen if t not in timesteps]
        if missing:
            raise ValueError(f"`randomization_timesteps` {missing} are not among the explained timesteps {timesteps}.")
        reference = result.maps[[timesteps.index(t) for t in chosen]]
        checks.randomization = cascading_randomization(
            explainer, inputs, chosen, max_stages=max_stages, init_seed=seed, reference_maps=reference,
            **attribute_kwargs,
        )  # fmt: skip
        checks.seconds["randomization"] = time.perf_counter() - start
    return checks

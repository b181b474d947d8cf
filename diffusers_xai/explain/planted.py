r"""Planted ground truth: small datasets built in code whose true explanation is known, and scores of recovery.

An explanation method earns trust when it finds an answer that was put there on purpose. Each builder returns the
training data of one modality together with the answer a faithful explanation of a model trained on it must give:

- [`planted_table`]: columns with a known dependency graph. $c = a + 0.3\sin 2a + 0.2\,\epsilon$, while $b$ and $d$ are
  independent of $c$; and a condition $y$ that only moves $d$. Explaining $\hat{x}_0[c]$ w.r.t. the row $x_t$ must
  rank $a$ first among the other columns; "why this condition" must point at $d$.
- [`planted_series`]: a driver channel (white noise by default: independent points, so the answer is well posed; an
  AR(2) process on request) and a follower that repeats it `delay` steps later:
  $s_1[\tau] = s_0[\tau - \delta] + 0.1\,\epsilon$. Explaining $\hat{x}_0[1, \tau]$ must peak on channel 0 at
  $\tau - \delta$.
- [`planted_images`]: scikit-learn's digits with a square mark whose corner encodes the class (the digit itself is
  drawn independently of the class). "Why this class" must land in that corner.

Scores: [`top_k_precision`] (rank-based hits, for tables and series), [`pointing_game`] (the map's maximum falls in
the true region; Zhang et al., "Top-down Neural Attention by Excitation Backprop", 2016,
https://arxiv.org/abs/1608.00507) and [`rank_correlation`] (Spearman against a graded truth). The recovery
criterion is 0.8 for each ([`RECOVERY_THRESHOLD`]).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

__all__ = [
    "RECOVERY_THRESHOLD",
    "SERIES_DRIVERS",
    "PlantedImages",
    "PlantedSeries",
    "PlantedTable",
    "corner_regions",
    "planted_images",
    "planted_series",
    "planted_table",
    "pointing_game",
    "rank_correlation",
    "recover_class_region",
    "recover_lag",
    "recover_parents",
    "top_k_precision",
]

RECOVERY_THRESHOLD = 0.8


def _check_count(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.")


# ---- tables ----


@dataclass
class PlantedTable:
    r"""
    A table with a known dependency graph (see [`planted_table`]).

    Args:
        frame (`pd.DataFrame`): columns `a`, `b`, `c`, `d` (floats) and the condition `y` (ints 0..2).
        parents (`dict[str, list[str]]`): the true parents of each dependent column: `{"c": ["a"]}`.
        condition_column (`str`): `"y"`.
        condition_effects (`list[str]`): the columns the condition moves: `["d"]`.
    """

    frame: pd.DataFrame
    parents: dict[str, list[str]] = field(default_factory=lambda: {"c": ["a"]})
    condition_column: str = "y"
    condition_effects: list[str] = field(default_factory=lambda: ["d"])


def planted_table(num_rows: int = 2048, seed: int = 0) -> PlantedTable:
    r"""
    Rows of $a, b, d' \sim \mathcal{N}(0, 1)$ i.i.d., $y \sim \mathcal{U}\{0, 1, 2\}$,
    $c = f(a) + 0.2\,\epsilon$ with $f(a) = a + 0.3 \sin 2a$ (nonlinear, and never flat: $f' \ge 0.4$, so every row
    depends on $a$) and $d = 1.5\,(y - 1) + 0.5\,d'$.

    The truth: $c$'s only parent is $a$ ($b$ and $d$ carry no information on $c$), and the condition $y$ changes
    only $d$. A faithful attribution of $\hat{x}_0[c]$ ranks $a$ above $b$ and $d$; "why this condition" puts
    $d$ first.

    Args:
        num_rows (`int`, *optional*, defaults to 2048).
        seed (`int`, *optional*, defaults to 0).
    """
    _check_count("num_rows", num_rows, 8)
    rng = np.random.default_rng(seed)
    a, b, d_noise, c_noise = rng.standard_normal((4, num_rows))
    y = rng.integers(0, 3, num_rows)
    frame = pd.DataFrame(
        {
            "a": a,
            "b": b,
            "c": a + 0.3 * np.sin(2.0 * a) + 0.2 * c_noise,
            "d": 1.5 * (y - 1.0) + 0.5 * d_noise,
            "y": y.astype(np.int64),
        }
    )
    return PlantedTable(frame=frame)


# ---- time series ----


@dataclass
class PlantedSeries:
    r"""
    Windows with a known lag structure (see [`planted_series`]).

    Args:
        windows (`np.ndarray` `[N, L, 2]`): time-major windows (as [`TimeSeriesPreprocessor`] takes them).
        delay (`int`): $\delta$, the lag at which channel 1 repeats channel 0.
        driver (`str`): how the driver was drawn, `"white"` or `"ar2"` (see [`planted_series`]).
        channels (`list[str]`): `["driver", "follower"]`.
    """

    windows: np.ndarray
    delay: int
    driver: str = "white"
    channels: list[str] = field(default_factory=lambda: ["driver", "follower"])

    def true_position(self, position: int) -> int:
        """Where on the driver channel an attribution of the follower at `position` must peak."""
        if not self.delay <= position < self.windows.shape[1]:
            raise ValueError(
                f"`position` must be in [{self.delay}, {self.windows.shape[1]}) so that its cause is in the window, "
                f"got {position}."
            )
        return position - self.delay


SERIES_DRIVERS = ("white", "ar2")


def planted_series(
    num_windows: int = 2048, length: int = 24, delay: int = 3, seed: int = 0, driver: str = "white"
) -> PlantedSeries:
    r"""
    Two channels: a driver $s_0$ and a follower $s_1[\tau] = s_0[\tau - \delta] + 0.1\,\epsilon'$ that repeats it
    $\delta$ steps later. The driver is, by `driver`:

    - `"white"` (the default): i.i.d. $\mathcal{N}(0, 1)$ points. The question is then well posed for every method:
      the driver's points are independent, so the posterior mean $E[s_1[\tau] \mid x_t]$ depends on the driver at
      $\tau - \delta$ alone (and on the follower's own $x_t[1, \tau]$), at every noise level. The exact
      (linear-Gaussian) optimum's $|J \odot x_t|$ on the driver peaks at $\tau - \delta$ in all 64 held-out
      windows at t = 740, 500 and 240 (`bench/explain_variants.py --lag-analysis`).
    - `"ar2"`: the AR(2) process $s_0[\tau] = 1.2\,s_0[\tau-1] - 0.5\,s_0[\tau-2] + \epsilon$ (stationary: roots
      of modulus $\sqrt{0.5}$; neighbouring points correlate 0.8). Kept to reproduce a finding: at high noise the
      Bayes-optimal denoiser spreads its dependence over the lags around $\tau - \delta$ (0.72 of the peak at
      $\pm 1$ at t = 740), so the exact optimum's input-multiplied map $|J \odot x_t|$, the exact contribution of
      each input to a linear map, peaks at $\tau - \delta$ in only 36% / 64% / 77% of windows at t = 740 / 500 /
      240 (`bench/explain_variants.py --lag-analysis --driver ar2`): "peak at $\tau - \delta$" is not the true
      answer for methods that ask how much each input contributed.

    The truth: $s_1[\tau]$ is caused by $s_0[\tau - \delta]$; a faithful attribution of $\hat{x}_0[1, \tau]$
    peaks on channel 0 at $\tau - \delta$ (for $\tau \ge \delta$).

    Args:
        num_windows (`int`, *optional*, defaults to 2048), length (`int`, *optional*, defaults to 24): $N$, $L$.
        delay (`int`, *optional*, defaults to 3): $\delta$, in `[1, length)`.
        seed (`int`, *optional*, defaults to 0).
        driver (`str`, *optional*, defaults to `"white"`): `"white"` or `"ar2"` (above).
    """
    _check_count("num_windows", num_windows, 8)
    _check_count("length", length, 4)
    if not isinstance(delay, int) or not 1 <= delay < length:
        raise ValueError(f"`delay` must be an int in [1, {length}) (the window length), got {delay!r}.")
    if driver not in SERIES_DRIVERS:
        raise ValueError(f"`driver` must be one of {SERIES_DRIVERS}, got {driver!r}.")
    rng = np.random.default_rng(seed)
    burn_in = 50 if driver == "ar2" else 0
    total = burn_in + length + delay
    eps = rng.standard_normal((num_windows, total))
    s = eps
    if driver == "ar2":
        s = np.zeros((num_windows, total))
        for tau in range(2, total):  # AR(2) recursion: sequential by definition
            s[:, tau] = 1.2 * s[:, tau - 1] - 0.5 * s[:, tau - 2] + eps[:, tau]
    s = s[:, burn_in:]
    driver_values = s[:, delay:]  # s_0[tau], tau = 0..L-1
    follower = s[:, :length] + 0.1 * rng.standard_normal((num_windows, length))  # s_0[tau - delay] + noise
    windows = np.stack([driver_values, follower], axis=-1).astype(np.float32)
    return PlantedSeries(windows=windows, delay=delay, driver=driver)


# ---- images ----


def corner_regions(resolution: int, num_classes: int = 4) -> torch.Tensor:
    r"""
    The region of each class's mark: `[num_classes, resolution, resolution]` booleans, class $k$ in corner $k$
    (top-left, top-right, bottom-left, bottom-right), a square of `resolution // 4` pixels in the corner.
    """
    _check_count("resolution", resolution, 8)
    if num_classes not in (2, 3, 4):
        raise ValueError(f"`num_classes` must be 2, 3 or 4 (one corner each), got {num_classes!r}.")
    size = resolution // 4
    regions = torch.zeros(num_classes, resolution, resolution, dtype=torch.bool)
    starts = [0, resolution - size]
    for k in range(num_classes):
        r, c = starts[k // 2], starts[k % 2]
        regions[k, r : r + size, c : c + size] = True
    return regions


@dataclass
class PlantedImages:
    r"""
    Class-conditional images whose class is drawn in a known region (see [`planted_images`]).

    Args:
        images (`torch.Tensor` `[N, 1, R, R]`): in [-1, 1].
        class_labels (`torch.Tensor` `[N]`): the planted classes 0..K-1 (independent of the digit).
        regions (`torch.Tensor` `[K, R, R]`): the mark region of each class ([`corner_regions`]).
        digits (`torch.Tensor` `[N]`): the underlying digit of each image (a nuisance variable).
    """

    images: torch.Tensor
    class_labels: torch.Tensor
    regions: torch.Tensor
    digits: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(self.regions.shape[0])

    @property
    def unmarked(self) -> torch.Tensor:
        """The same images without any mark (every corner region at the background, -1): the digits alone."""
        return torch.where(self.regions.any(0), torch.tensor(-1.0), self.images)


def planted_images(num_images: int = 1797, resolution: int = 16, num_classes: int = 4, seed: int = 0) -> PlantedImages:
    r"""
    scikit-learn's digits (upscaled to `resolution`) shrunk into the centre, and a bright square in corner $k$ of
    a class $k$ drawn uniformly and independently of the digit. The digit carries no information on the class;
    only the mark does, so "why this class" must point at the mark's corner ([`corner_regions`]).

    Args:
        num_images (`int`, *optional*, defaults to 1797): images, drawn with replacement from the 1,797 digits.
        resolution (`int`, *optional*, defaults to 16): $R \ge 8$.
        num_classes (`int`, *optional*, defaults to 4): 2 to 4.
        seed (`int`, *optional*, defaults to 0).
    """
    from ..modalities.image.data import load_digits_tensors

    _check_count("num_images", num_images, 8)
    regions = corner_regions(resolution, num_classes)
    digits, digit_labels = load_digits_tensors(resolution)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, digits.shape[0], (num_images,), generator=generator)
    # shrink the digit into the central square between the corner regions, so the two never overlap
    inner = resolution - 2 * (resolution // 4)
    small = F.interpolate(digits[index], size=(inner, inner), mode="bilinear", align_corners=False)
    images = torch.full((num_images, 1, resolution, resolution), -1.0)
    lo = (resolution - inner) // 2
    images[:, :, lo : lo + inner, lo : lo + inner] = small
    labels = torch.randint(0, num_classes, (num_images,), generator=generator)
    images = torch.where(regions[labels].unsqueeze(1), torch.ones(()), images)
    return PlantedImages(images=images, class_labels=labels, regions=regions, digits=digit_labels[index])


# ---- recovery scores ----


def top_k_precision(scores: torch.Tensor, truth: torch.Tensor, k: int | None = None) -> torch.Tensor:
    r"""
    Per row, the fraction of the `k` highest `scores` that are true: `scores` `[N, F]`, `truth` `[N, F]` or `[F]`
    booleans; `k` defaults to the number of true features of each row. Returns `[N]`. Use absolute attributions
    when the sign does not matter. Ties are broken by feature order (stable sort), never in the method's favour
    by chance: an all-equal score row picks the first features.
    """
    scores = torch.as_tensor(scores).float()
    if scores.ndim != 2:
        raise ValueError(f"`scores` must be [N, F], got shape {tuple(scores.shape)}.")
    truth = torch.as_tensor(truth).bool().expand_as(scores)
    counts = truth.sum(dim=1)
    if (counts == 0).any():
        raise ValueError("Every row of `truth` needs at least one true feature.")
    order = scores.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(scores.shape[1]).expand_as(order))
    kk = counts if k is None else torch.full_like(counts, int(k))
    hits = (truth & (ranks < kk.unsqueeze(1))).sum(dim=1)
    return hits.float() / kk.float()


def pointing_game(maps: torch.Tensor, regions: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    r"""
    Pointing game (Zhang et al., 2016, https://arxiv.org/abs/1608.00507): a hit when the map's maximum lies in the
    true region (dilated by `tolerance` pixels, the paper's 15 px at 224 px). `maps` `[N, H, W]` (or `[N, 1, H, W]`),
    `regions` `[N, H, W]` booleans. Returns `[N]` hits as floats. A constant map has no maximum and scores a miss.
    """
    maps = torch.as_tensor(maps).float()
    if maps.ndim == 4:
        maps = maps.sum(dim=1)
    regions = torch.as_tensor(regions).bool()
    if maps.shape != regions.shape or maps.ndim != 3:
        raise ValueError(f"`maps` {tuple(maps.shape)} and `regions` {tuple(regions.shape)} must both be [N, H, W].")
    if tolerance:
        k = 2 * tolerance + 1
        regions = F.max_pool2d(regions.float().unsqueeze(1), k, stride=1, padding=tolerance).squeeze(1).bool()
    flat = maps.flatten(1)
    peak = flat.argmax(dim=1)
    constant = flat.amax(dim=1) == flat.amin(dim=1)
    hit = regions.flatten(1).gather(1, peak.unsqueeze(1)).squeeze(1)
    return (hit & ~constant).float()


def rank_correlation(scores: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each row of `scores` `[N, F]` with a graded `truth` `[N, F]` or `[F]`: `[N]`."""
    from torchmetrics.functional import spearman_corrcoef

    scores = torch.as_tensor(scores).double()
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"`scores` must be [N, F] with F >= 2, got shape {tuple(scores.shape)}.")
    truth = torch.as_tensor(truth).double().expand_as(scores)
    return spearman_corrcoef(scores.T.contiguous(), truth.T.contiguous()).reshape(-1).float()


# ---- recovery by an explainer ----


def _attribute(explainer, x_t: torch.Tensor, timesteps, target, **kwargs):
    """The explainer's result, explaining `target` when the method takes one (attention maps do not)."""
    import inspect

    if "target" in inspect.signature(explainer.attribute).parameters:
        kwargs["target"] = target
    return explainer.attribute(x_t, timesteps=list(timesteps), **kwargs)


def _maps(explainer, x_t: torch.Tensor, timesteps, target, **kwargs) -> torch.Tensor:
    return _attribute(explainer, x_t, timesteps, target, **kwargs).maps.float()


def recover_parents(explainer, x_t: torch.Tensor, timesteps, column: int, parents, class_labels=None) -> torch.Tensor:
    r"""
    Explain the model's contribution to $\hat{x}_0[\text{column}]$ of rows $x_t$ `[B, F]` and score, per (step, row),
    the top-k precision of |attributions| over the *other* features against the true `parents` (indices): `[K * B]`.
    The target's own feature is left out: that $\hat{x}_0[c]$ depends on $x_t[c]$ is denoising, not the planted
    dependency.
    """
    from .target import ExplanationTarget

    width = x_t.shape[1]
    mask = torch.zeros(width)
    mask[column] = 1.0
    maps = _maps(explainer, x_t, timesteps, ExplanationTarget(mask=mask), class_labels=class_labels)
    scores = maps.reshape(-1, width).abs()
    others = [i for i in range(width) if i != column]
    truth = torch.zeros(width, dtype=torch.bool)
    truth[list(parents)] = True
    return top_k_precision(scores[:, others], truth[others])


def recover_lag(
    explainer, x_t: torch.Tensor, timesteps, channel: int, position: int, cause: int, cause_channel: int = 0
) -> torch.Tensor:
    r"""
    Explain the model's contribution to $\hat{x}_0[\text{channel}, \text{position}]$ of windows $x_t$ `[B, C, L]` and
    score, per (step, window), whether the |attribution| on `cause_channel` (the driver) peaks at time `cause`:
    `[K * B]` hits. Methods without per-channel attributions (GradCAM, attention: one value per time point) are scored
    on their map, leaving out `position` itself when `cause_channel == channel` (its influence is denoising).
    """
    from .target import ExplanationTarget

    c, length = x_t.shape[1:]
    mask = torch.zeros(c, length)
    mask[channel, position] = 1.0
    result = _attribute(explainer, x_t, timesteps, ExplanationTarget(mask=mask))
    attributions = result.attributions[0] if isinstance(result.attributions, tuple) else result.attributions
    if attributions.ndim == 4 and attributions.shape[2] == c:  # [K, B, C, L]: the driver channel
        scores = attributions[:, :, cause_channel].float().abs().reshape(-1, length)
        others = list(range(length))
    else:
        maps = result.maps.float()
        scores = maps.abs().reshape(maps.shape[0] * maps.shape[1], -1, length).sum(dim=1)  # [K * B, L]
        others = [i for i in range(length) if i != position or cause_channel != channel]
    truth = torch.zeros(length, dtype=torch.bool)
    truth[cause] = True
    return top_k_precision(scores[:, others], truth[others], k=1)


def recover_class_region(
    explainer, x_t: torch.Tensor, timesteps, class_labels: torch.Tensor, regions: torch.Tensor, null_class
) -> torch.Tensor:
    r"""
    Explain "why this class" ([`ConditionTarget`]: the class's contribution to $\hat{x}_0$, conditional minus
    unconditional) on images $x_t$ `[B, 1, H, W]` and score the pointing game of |map| against each sample's class
    region (`regions[class_labels]`): `[K * B]` hits.
    """
    from .condition import ConditionTarget

    maps = _maps(explainer, x_t, timesteps, ConditionTarget(null_class=null_class), class_labels=class_labels)
    maps = maps[:, :, :1] if maps.ndim == 5 else maps  # attention maps stack one map per token: the first
    k, b = maps.shape[:2]
    truth = regions[class_labels].unsqueeze(0).expand(k, -1, -1, -1)
    return pointing_game(maps.abs().reshape(k * b, *maps.shape[-2:]), truth.reshape(k * b, *truth.shape[-2:]))

"""Diversity of a sample set: mean pairwise feature distance and per-class coverage under a classifier."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .neighbors import DEFAULT_MAX_BYTES, _as_matrix, distance_chunks

__all__ = ["ClassCoverage", "class_coverage", "mean_pairwise_distance"]


def mean_pairwise_distance(features, max_bytes: int = DEFAULT_MAX_BYTES, dtype: torch.dtype = torch.float64) -> float:
    r"""
    $\frac{1}{N(N-1)} \sum_{i \neq j} \|f_i - f_j\|_2$ over `[N, D]` features, exactly, in row chunks. Compare the
    generated value with the real one: a ratio well below 1 means mode collapse, above 1 noisy samples.
    """
    x = _as_matrix(features, "features", dtype)
    if len(x) < 2:
        raise ValueError(f"Mean pairwise distance needs at least 2 samples, got {len(x)}.")
    total = torch.zeros((), dtype=torch.float64)
    for start, d in distance_chunks(x, x, max_bytes):
        # the diagonal is ~0 up to rounding; remove it exactly
        rows = torch.arange(len(d))
        d[rows, start + rows] = 0
        total += d.sum(dtype=torch.float64)
    return float(total / (len(x) * (len(x) - 1)))


@dataclass
class ClassCoverage:
    """Predicted-class histograms of generated (and real) samples under a classifier."""

    fake_histogram: list[float]
    real_histogram: list[float] | None
    classes_covered: float  # fraction of classes predicted for at least `min_fraction` of the generated samples
    total_variation: float | None  # TV distance between the two histograms (0 = same class balance)
    min_fraction: float

    def to_dict(self) -> dict:
        return asdict(self)


def class_coverage(fake_logits, real_logits=None, min_fraction: float | None = None) -> ClassCoverage:
    """
    Per-class coverage from classifier logits `[M, K]` (and `[N, K]` for the real data): the histogram of arg-max
    classes, the fraction of the K classes that receive at least `min_fraction` of the samples (default
    `1 / (4K)`, a quarter of a uniform share, so one stray sample does not count as covering a class) and the
    total-variation distance to the real histogram.
    """
    fake = torch.as_tensor(fake_logits)
    if fake.ndim != 2:
        raise ValueError(f"`fake_logits` must be [M, K], got shape {tuple(fake.shape)}.")
    k = fake.shape[1]
    min_fraction = 1.0 / (4 * k) if min_fraction is None else float(min_fraction)
    fake_hist = torch.bincount(fake.argmax(1), minlength=k).double() / len(fake)
    real_hist = tv = None
    if real_logits is not None:
        real = torch.as_tensor(real_logits)
        if real.ndim != 2 or real.shape[1] != k:
            raise ValueError(f"`real_logits` must be [N, {k}], got shape {tuple(real.shape)}.")
        real_hist = torch.bincount(real.argmax(1), minlength=k).double() / len(real)
        tv = float(0.5 * (fake_hist - real_hist).abs().sum())
    return ClassCoverage(
        fake_histogram=fake_hist.tolist(),
        real_histogram=None if real_hist is None else real_hist.tolist(),
        classes_covered=float((fake_hist >= min_fraction).double().mean()),
        total_variation=tv,
        min_fraction=min_fraction,
    )

"""FID, KID and Inception Score on precomputed features, through torchmetrics, with small-sample warnings."""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn as nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

__all__ = ["fid_sample_warnings", "frechet_distance", "inception_score", "kernel_distance"]

logger = logging.getLogger(__name__)

# Below this many samples per set FID is visibly biased upwards (Chong & Forsyth 2020, https://arxiv.org/abs/1911.07023);
# the usual protocol is 10k–50k Inception samples.
FID_SMALL_SAMPLE = 2000


class _Precomputed(nn.Module):
    """Identity "feature extractor": lets torchmetrics' metrics consume features we already extracted once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _features(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x).double()
    if x.ndim != 2:
        raise ValueError(f"`{name}` must be [N, D] features, got shape {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise ValueError(f"`{name}` contains NaN or inf values.")
    return x


def _feature_pair(real_features, fake_features) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets as checked float64 `[N, D]` and `[M, D]` features of the same `D`."""
    real = _features(real_features, "real_features")
    fake = _features(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"Feature dimensions differ: real {tuple(real.shape)} vs fake {tuple(fake.shape)}.")
    return real, fake


def fid_sample_warnings(num_real: int, num_fake: int, num_features: int, space: str) -> list[str]:
    """The caveats a FID over these sample counts needs, as sentences (also logged)."""
    out = []
    n = min(num_real, num_fake)
    if n <= num_features:
        out.append(
            f"FID ({space} features) uses {n} samples for {num_features}-D features: the covariance is singular and "
            "the value unreliable; use more samples than feature dimensions, or rely on KID (reported beside it), "
            "which is unbiased."
        )
    elif n < FID_SMALL_SAMPLE:
        out.append(
            f"FID is biased upwards at small sample counts ({num_real} real, {num_fake} generated); compare FIDs only "
            "at equal N and read KID (unbiased) beside it."
        )
    for message in out:
        logger.warning(message)
    return out


def frechet_distance(real_features, fake_features) -> float:
    r"""
    Fréchet distance $\|\mu_r - \mu_g\|^2 + \mathrm{Tr}(\Sigma_r + \Sigma_g - 2(\Sigma_r\Sigma_g)^{1/2})$ between
    Gaussians fitted to two feature sets `[N, D]`, `[M, D]` (torchmetrics' `FrechetInceptionDistance`, float64).
    """
    real, fake = _feature_pair(real_features, fake_features)
    if min(len(real), len(fake)) < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {len(real)} real and {len(fake)} fake.")
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1])).double()
    metric.update(real, real=True)
    metric.update(fake, real=False)
    # sqrt of tiny negative eigenvalues of Σ_r Σ_g (numerical noise) gives |value| ~ 1e-6 below 0: clamp.
    return max(float(metric.compute()), 0.0)


def _seeded_compute(metric, seed: int) -> tuple[float, float]:
    """`(mean, std)` of a torchmetrics metric whose compute draws random subsets or splits (KID's `torch.randperm`,
    IS's shuffle): seeded with `seed` in a forked RNG, so the caller's random state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def kernel_distance(
    real_features, fake_features, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    r"""
    Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel
    $k(x, y) = (x^\top y / D + 1)^3$, averaged over `subsets` random subsets (torchmetrics'
    `KernelInceptionDistance`). `subset_size` is capped at the smaller set. Seeded: same inputs, same value.

    Returns:
        `(mean, std)` over the subsets.
    """
    real, fake = _feature_pair(real_features, fake_features)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(real)} real and {len(fake)} fake.")
    if size == len(real) == len(fake):
        subsets = 1  # every "subset" would be both whole sets: identical values, so compute it once (std 0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size)
    # float32 as torchmetrics does for Inception features: the 100 subset kernels are the cost, and 2x faster
    metric.update(real.float(), real=True)
    metric.update(fake.float(), real=False)
    return _seeded_compute(metric, seed)


def inception_score(logits, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    r"""
    Inception Score $\exp(\mathbb{E}_x \mathrm{KL}(p(y|x) \| p(y)))$ (Salimans et al. 2016) from classifier logits
    `[N, K]`, over `splits` splits (torchmetrics' `InceptionScore`). Its maximum is K (confident and balanced).

    Returns:
        `(mean, std)` over the splits.
    """
    logits = _features(logits, "logits")
    if len(logits) < splits:
        raise ValueError(f"Inception Score with {splits} splits needs at least {splits} samples, got {len(logits)}.")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = InceptionScore(feature=_Precomputed(logits.shape[1]), splits=splits)
    metric.update(logits)
    return _seeded_compute(metric, seed)

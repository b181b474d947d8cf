"""Memorisation: nearest training neighbours of generated samples and the Carlini et al. (2023) ratio test."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .neighbors import DEFAULT_MAX_BYTES, nearest_neighbours

__all__ = ["MemorizationResult", "memorization_test"]


@dataclass
class MemorizationResult:
    r"""
    Per generated sample: its nearest training neighbour and the ratio
    $\ell(\hat x) = d(\hat x, x_1) / (\alpha \cdot \frac{1}{k}\sum_{i=1}^{k} d(\hat x, x_i))$ over its `k` nearest
    training samples $x_1, \dots, x_k$; `flagged` where the ratio is below `threshold`.

    Args:
        nearest_index (`torch.LongTensor` `[M]`), nearest_distance (`[M]`), ratio (`[M]`), flagged (`BoolTensor [M]`).
        k (`int`), alpha (`float`), threshold (`float`), space (`str`): `"pixel"` or the feature space's name.
    """

    nearest_index: torch.Tensor
    nearest_distance: torch.Tensor
    ratio: torch.Tensor
    flagged: torch.Tensor
    k: int
    alpha: float
    threshold: float
    space: str

    @property
    def fraction_flagged(self) -> float:
        return float(self.flagged.double().mean())

    def to_dict(self, max_indices: int = 100) -> dict:
        flagged = self.flagged.nonzero().flatten()
        return {
            "space": self.space,
            "k": self.k,
            "alpha": self.alpha,
            "threshold": self.threshold,
            "fraction_flagged": self.fraction_flagged,
            "num_flagged": int(self.flagged.sum()),
            "flagged_indices": flagged[:max_indices].tolist(),
            "flagged_nearest_training_indices": self.nearest_index[flagged[:max_indices]].tolist(),
            "median_ratio": float(self.ratio.median()),
            "median_nearest_distance": float(self.nearest_distance.median()),
        }


def memorization_test(
    generated,
    training,
    k: int = 50,
    alpha: float = 0.5,
    threshold: float = 1 / 3,
    space: str = "pixel",
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = False,
) -> MemorizationResult:
    r"""
    Flag generated samples that are near-copies of training samples with the relative-distance test of Carlini et
    al., "Extracting Training Data from Diffusion Models" (2023, https://arxiv.org/abs/2301.13188, Sec. 5, CIFAR-10):
    $\ell(\hat x) = \ell_2(\hat x, x_1) / (\alpha \cdot \mathbb{E}_{y \in S_{\hat x}} \ell_2(\hat x, y))$ with
    $S_{\hat x}$ the `k` nearest training samples ($\alpha = 0.5$, $k = 50$ as in the paper), flagged when
    $\ell < $ `threshold` (1/3). An exact copy has $\ell = 0$; a novel sample in a dense region has $\ell \approx 2$.
    The test is relative to the local density, so it works in pixel space and in any feature space.

    Args:
        generated (`[M, ...]`), training (`[N, ...]`): samples (flattened) or features; same trailing shape.
        k (`int`, *optional*, defaults to 50): neighbours in the mean (capped at N).
        alpha (`float`, *optional*, defaults to 0.5): the paper's scale of the mean neighbour distance.
        threshold (`float`, *optional*, defaults to 1/3): flag when $\ell$ < threshold.
        space (`str`): the name written into the result (`"pixel"`, `"digits-CNN"`).
    """
    generated = torch.as_tensor(generated)
    training = torch.as_tensor(training)
    if generated.shape[1:] != training.shape[1:]:
        raise ValueError(
            f"Generated samples {tuple(generated.shape[1:])} and training samples {tuple(training.shape[1:])} differ "
            "in shape; compare like with like."
        )
    if not threshold > 0 or not alpha > 0:
        raise ValueError(f"`threshold` and `alpha` must be positive, got threshold={threshold}, alpha={alpha}.")
    k = min(int(k), len(training))
    if k < 2:
        raise ValueError(f"The ratio test needs k >= 2 training samples, got k={k} (N={len(training)}).")
    dist, idx = nearest_neighbours(generated.flatten(1), training.flatten(1), k, max_bytes, progress=progress)
    mean_k = dist.mean(1)
    # all k neighbours at distance 0 (k duplicates of the sample in the training set): a copy, ratio 0
    ratio = torch.where(mean_k > 0, dist[:, 0] / (alpha * mean_k).clamp_min(1e-300), torch.zeros_like(mean_k))
    return MemorizationResult(
        nearest_index=idx[:, 0],
        nearest_distance=dist[:, 0],
        ratio=ratio,
        flagged=ratio < threshold,
        k=k,
        alpha=float(alpha),
        threshold=float(threshold),
        space=space,
    )

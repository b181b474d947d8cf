"""Faithfulness curves and the model-randomisation sanity check (one row per method)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..explain.faithfulness import FaithfulnessResult
from ..explain.randomization import SanityCheckResult
from ._io import label_row, new_figure, save_figure

__all__ = ["save_faithfulness_curves", "save_sanity_check"]


def save_faithfulness_curves(
    results: FaithfulnessResult | Mapping[str, FaithfulnessResult],
    path: str | os.PathLike,
    sample_index: int = 0,
    title: str | None = None,
) -> Path:
    """
    Save deletion and insertion curves (Petsiuk et al., 2018), one line per method when given a
    `dict[str, FaithfulnessResult]` (computed on the same input), against the mean curve of the random maps.
    """
    rows = dict(results) if isinstance(results, Mapping) else {"map": results}
    if not rows:
        raise ValueError("No faithfulness results to plot.")
    fig = new_figure(7.0, 2.8)
    axes = fig.subplots(1, 2)
    for ax, kind in zip(axes, ("deletion", "insertion")):
        x = next(iter(rows.values())).fractions.numpy()
        for name, result in rows.items():
            auc = float(getattr(result, f"{kind}_auc")[sample_index])
            ax.plot(x, getattr(result, kind)[sample_index].numpy(), marker=".", label=f"{name} ({auc:.3f})")
        protocols = {getattr(r, "protocol", "signed") for r in rows.values()}
        for protocol, style in zip(sorted(protocols, reverse=True), ("k--", "k:")):  # one random line per protocol
            same = [r for r in rows.values() if getattr(r, "protocol", "signed") == protocol]
            random = sum(getattr(r, f"random_{kind}")[sample_index] for r in same) / len(same)
            random_auc = sum(float(getattr(r, f"random_{kind}_auc")[sample_index]) for r in same) / len(same)
            what = "" if len(protocols) == 1 else (", |Δ|" if protocol == "magnitude" else ", signed")
            ax.plot(x, random.numpy(), style, label=f"random{what} ({random_auc:.3f})")
        ax.set_title(_curve_title(kind, protocols), fontsize=9)
        ax.set_xlabel("fraction of pixels", fontsize=8)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, tight=True)


def _curve_title(kind: str, protocols: set[str]) -> str:
    """Which AUC is better: signed maps want f to fall on deletion; unsigned ones, |f - f(x)| to grow."""
    signed = "lower" if kind == "deletion" else "higher"
    magnitude = "higher" if kind == "deletion" else "lower"
    if protocols == {"magnitude"}:
        return f"{kind} of |f - f(x)| (AUC {magnitude} is better)"
    if protocols == {"signed"}:
        return f"{kind} (AUC {signed} is better)"
    return f"{kind}\n(AUC {signed} is better; |Δ| maps: {magnitude})"


def save_sanity_check(
    results: SanityCheckResult | Mapping[str, SanityCheckResult],
    path: str | os.PathLike,
    step: int = 0,
    sample_index: int = 0,
) -> Path:
    """
    Save the map of the trained model next to the map of the re-initialised one (absolute values, Adebayo et al.,
    2018), with their SSIM and Spearman correlation: one row per method when given a dict.
    """
    rows = dict(results) if isinstance(results, Mapping) else {"": results}
    if not rows:
        raise ValueError("No sanity-check results to plot.")
    fig = new_figure(4.4, 2.0 * len(rows) + 0.3)
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for r, (name, result) in enumerate(rows.items()):
        for c, (maps, kind) in enumerate(((result.maps, "trained"), (result.random_maps, "randomised"))):
            ax = axes[r, c]
            ax.imshow(maps[step, sample_index].abs().sum(0).numpy(), cmap="inferno", interpolation="nearest")
            ax.axis("off")
            ax.set_title(kind if c == 0 else f"{kind}: SSIM {result.ssim:.2f}, rho {result.spearman:.2f}", fontsize=7)
        if name:
            label_row(axes[r, 0], name)
    return save_figure(fig, path)

"""The PNGs, GIF and `explanations.json` of one [`ExplanationReport`] (what [`Explainer.explain`] returns)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..explain.explain import ExplanationReport
from ..utils.io import atomic_write
from .attention import save_attention_maps
from .curves import save_faithfulness_curves, save_sanity_check
from .heatmaps import save_heatmap_overlay, save_step_grid
from .images import save_image_grid
from .trajectory import save_commit_step_map, save_denoising_gif, save_trajectory_curves, save_trajectory_strip

__all__ = ["save_explanation_report"]


def save_explanation_report(report: ExplanationReport, out_dir: str | os.PathLike, gif: bool = True) -> dict:
    """
    Write every PNG of `report` (and a GIF of the denoising) into `out_dir` plus `explanations.json`; returns the JSON
    content: [`ExplanationReport.summary`] with the written files (relative to `out_dir`) per method.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = report.summary()
    files: dict[str, list[str]] = {}

    def add(key: str, path: Path) -> None:
        files.setdefault(key, []).append(path.name)

    add("sample", save_image_grid(report.image, out_dir / "sample.png"))
    add("trajectory", save_trajectory_strip(report.trace, out_dir / "trajectory_strip.png"))
    if gif:
        add("trajectory", save_denoising_gif(report.trace, out_dir / "denoising.gif"))
    if report.trajectory is not None:
        add("trajectory", save_trajectory_curves(report.trajectory, out_dir / "trajectory_curves.png"))
        add("trajectory", save_commit_step_map(report.trajectory, out_dir / "commit_steps.png", image=report.image))
    mid = len(report.timesteps) // 2
    for name, result in report.results.items():
        maps = result.maps[:, 0, 0]  # [K, H, W] of the one explained sample (first map channel/token)
        add(name, save_step_grid(maps, out_dir / f"{name}_steps.png", report.image, result.timesteps, title=name))
        add(
            name,
            save_heatmap_overlay(
                report.image, maps[mid], out_dir / f"{name}_overlay.png", title=f"{name}, t={result.timesteps[mid]}"
            ),
        )
        if name == "attention":
            add(name, save_attention_maps(result, out_dir / "attention_maps.png"))
    if report.faithfulness:
        curves = {n: f[mid] for n, f in report.faithfulness.items()}
        path = save_faithfulness_curves(curves, out_dir / "faithfulness.png", title=f"t={report.timesteps[mid]}")
        for name in curves:
            add(name, path)
    if report.sanity:
        path = save_sanity_check(report.sanity, out_dir / "sanity_checks.png")
        for name in report.sanity:
            add(name, path)
    if len(report.results) > 1:
        grid = {n: r.maps[:, 0, 0] for n, r in report.results.items()}
        add("all", save_step_grid(grid, out_dir / "all_methods.png", report.image, report.timesteps))
    for name, names in files.items():
        if name in summary["methods"]:
            summary["methods"][name]["files"] = names
    summary["files"] = files
    atomic_write(out_dir / "explanations.json", json.dumps(summary, indent=2))
    return summary

"""Plotting helpers: every function writes one PNG (matplotlib, Agg canvas) atomically and returns its path."""

from .attention import save_attention_maps, save_token_maps
from .curves import save_faithfulness_curves, save_sanity_check
from .heatmaps import save_heatmap_overlay, save_step_grid
from .images import save_image_grid
from .report import save_explanation_report
from .rows import (
    plot_column_attributions,
    plot_column_commit_steps,
    plot_series_attributions,
    plot_series_commit_steps,
)
from .samples import image_tiles, save_image_tiles, save_series_plot
from .text_to_image import save_word_maps
from .trajectory import save_commit_step_map, save_denoising_gif, save_trajectory_curves, save_trajectory_strip

__all__ = [
    "image_tiles",
    "plot_column_attributions",
    "plot_column_commit_steps",
    "plot_series_attributions",
    "plot_series_commit_steps",
    "save_attention_maps",
    "save_commit_step_map",
    "save_denoising_gif",
    "save_explanation_report",
    "save_faithfulness_curves",
    "save_heatmap_overlay",
    "save_image_grid",
    "save_image_tiles",
    "save_sanity_check",
    "save_series_plot",
    "save_step_grid",
    "save_token_maps",
    "save_trajectory_curves",
    "save_trajectory_strip",
    "save_word_maps",
]

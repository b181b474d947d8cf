"""Plotting helpers: value ranges, PNG/GIF output, atomic writes, bad input."""

import pytest
import torch
from PIL import Image

from diffusers_xai import TraceConfig
from diffusers_xai.explain import analyze_trajectory
from diffusers_xai.testing import tiny_traced_run
from diffusers_xai.utils.images import to_display_images
from diffusers_xai.viz import (
    save_attention_maps,
    save_commit_step_map,
    save_denoising_gif,
    save_heatmap_overlay,
    save_image_grid,
    save_step_grid,
    save_trajectory_curves,
    save_trajectory_strip,
)


def _png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_to_display_images_value_ranges():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3)
    torch.testing.assert_close(to_display_images(x), torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3))
    unit = torch.tensor([0.0, 0.25, 1.0]).view(1, 1, 1, 3)
    torch.testing.assert_close(to_display_images(unit), unit)  # no negatives: read as [0, 1]
    torch.testing.assert_close(to_display_images(unit, (-1.0, 1.0)), (unit + 1) / 2)
    pil = [Image.new("L", (3, 1), color=255)]
    torch.testing.assert_close(to_display_images(pil), torch.ones(1, 1, 1, 3))
    np_images = (unit.permute(0, 2, 3, 1)).numpy()  # [B, H, W, C] as pipelines return for output_type="np"
    torch.testing.assert_close(to_display_images(np_images), unit)
    with pytest.raises(TypeError, match="Expected images"):
        to_display_images("image.png")


def test_image_grid_and_heatmaps(tmp_path):
    images = torch.rand(5, 3, 8, 8) * 2 - 1
    path = save_image_grid(images, tmp_path / "grid.png", nrow=3, titles=[str(i) for i in range(5)])
    assert path.exists() and _png(path)[0] > 100
    with pytest.raises(ValueError, match="Got 2 titles for 5 images"):
        save_image_grid(images, tmp_path / "bad.png", titles=["a", "b"])
    heat = torch.randn(8, 8)
    assert _png(save_heatmap_overlay(images[0], heat, tmp_path / "overlay.png", title="map"))
    with pytest.raises(ValueError, match="upsample the map first"):
        save_heatmap_overlay(images[0], torch.randn(4, 4), tmp_path / "bad.png")
    maps = {"a": torch.randn(3, 1, 8, 8), "b": torch.rand(3, 8, 8)}
    assert _png(save_step_grid(maps, tmp_path / "steps.png", image=images[0], timesteps=[9, 5, 0]))
    with pytest.raises(ValueError, match="Got 2 timesteps for 3 steps"):
        save_step_grid(maps, tmp_path / "bad.png", timesteps=[1, 2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "overlay.png", "steps.png"]  # no temp files


def test_trace_plots(tmp_path):
    pipe, out = tiny_traced_run(num_inference_steps=5, trace=TraceConfig(attention=True))
    assert _png(save_trajectory_strip(out.trace, tmp_path / "strip.png", sample_index=1, max_steps=3))
    assert _png(save_attention_maps(out.trace, tmp_path / "attention.png"))
    analysis = analyze_trajectory(out.trace, pipe.scheduler)
    assert _png(save_trajectory_curves(analysis, tmp_path / "curves.png"))
    assert _png(save_commit_step_map(analysis, tmp_path / "commit.png", image=out.images[0]))
    gif = save_denoising_gif(out.trace, tmp_path / "denoise.gif", scale=4)
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 5 and im.size == (32, 32)
    with pytest.raises(ValueError, match="out of range"):
        save_trajectory_strip(out.trace, tmp_path / "bad.png", sample_index=2)
    no_attention = pipe(num_inference_steps=2, trace=True, output_type="pt")
    with pytest.raises(ValueError, match="holds no attention maps"):
        save_attention_maps(no_attention.trace, tmp_path / "bad.png")

"""A new modality is one new folder: register the 2-D points modality of this folder and run it through train ->
generate -> evaluate -> card -> the Space's tabs, with the public API only."""

import sys
from pathlib import Path

import datasets
import pytest
import torch

import diffusers_xai
from diffusers_xai import TrainingConfig, generate_dataset, get_modality, load_pipeline, register_modality, train
from diffusers_xai.modalities import MODALITIES

from . import PointsModality, PointsPipeline

SPACES = Path(__file__).resolve().parents[2] / "spaces"


@pytest.fixture
def points(monkeypatch):
    register_modality(PointsModality)
    yield get_modality("points")
    MODALITIES.pop("points", None)


def test_points_train_generate_evaluate_card_and_space_tab(points, tmp_path, monkeypatch):
    config = TrainingConfig.from_dict(
        {
            "modality": "points", "dataset_name": "two-blobs", "output_dir": str(tmp_path / "run"), "num_points": 128,
            "hidden": 32, "num_train_timesteps": 50, "train_batch_size": 32, "max_train_steps": 200,
            "learning_rate": 1e-2, "lr_warmup_steps": 1, "seed": 0, "report_to": "none", "validation_steps": None,
            "checkpointing_steps": None, "eval_samples": 200, "validation_num_inference_steps": 20,
        }
    )  # fmt: skip
    result = train(config)
    run = tmp_path / "run"
    # trained: the samples found both blobs (x near ±0.5, half on each side), scored by the modality's evaluate
    report = result.evaluation
    assert report.modality == "points" and report.num_generated == 200
    assert 0.3 < report["mean_abs_x"].value < 0.7 and 0.3 < report["right_share"].value < 0.7
    # the card speaks of the registered modality
    card = (run / "README.md").read_text()
    assert "A points diffusion model" in card and "- points" in card
    # sharded generation through the modality's sample_batch
    pipe, _ = load_pipeline(str(run))
    assert isinstance(pipe, PointsPipeline)
    out = generate_dataset(pipe, tmp_path / "gen", 6, shard_size=3, batch_size=3, num_inference_steps=5)
    assert out.manifest.modality == "points"
    rows = datasets.load_dataset(str(tmp_path / "gen"), split="train")
    alone = pipe(batch_size=1, generator=torch.Generator().manual_seed(rows[4]["seed"]), num_inference_steps=5)
    assert rows.num_rows == 6 and rows[4]["x"] == pytest.approx(alone.points[0, 0].item(), rel=1e-6)
    # the Space finds the modality through the registry and gives it the generic tab
    sys.path.insert(0, str(SPACES))
    try:
        import app
        from xai_space import generic

        demo = app.build_demo()
        tabs = {b.id: b.label for b in demo.blocks.values() if type(b).__name__ == "Tab" and isinstance(b.id, str)}
        modality_tabs = {"images": "Images", "tabular": "Tabular", "timeseries": "Time series", "points": "points"}
        assert {k: v for k, v in tabs.items() if k in modality_tabs} == modality_tabs
        monkeypatch.setenv("DIFFUSERS_XAI_ALLOWED_MODELS", str(run))  # the Space reads only what its owner allows
        shown = generic.generate(points, str(run), "ddim", 5, 0, 4)
        assert shown["modality"] == "points" and shown["shape"] == [4, 2] and len(shown["samples"]) == 4
    finally:
        sys.path.remove(str(SPACES))
    assert diffusers_xai.modality_of(pipe).name == "points"

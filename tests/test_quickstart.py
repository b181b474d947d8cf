import json

import torch

from diffusers_xai import DiffusionXAIPipeline, Trace
from diffusers_xai.cli import main


def test_quickstart_command_writes_the_output_folder(tmp_path, capsys):
    out = tmp_path / "qs"
    rc = main(
        [
            "quickstart",
            "--output_dir", str(out),
            "--max_train_steps", "3",
            "--num_samples", "2",
            "--num_inference_steps", "3",
            "--no_explain",
            "--no_evaluate",
        ]
    )  # fmt: skip
    assert rc == 0
    for name in ("samples.png", "trajectory.png", "attention.png", "trace.safetensors", "summary.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["training"]["global_step"] == 3
    assert summary["sampling"]["num_inference_steps"] == 3 and summary["sampling"]["attention_layers"]
    trace = Trace.load(out / "trace.safetensors")
    assert trace.stack("pred_original_sample").shape == (3, 2, 1, 16, 16)
    pipe = DiffusionXAIPipeline.from_pretrained(out / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=1, num_inference_steps=2, output_type="pt", generator=torch.Generator().manual_seed(0))
    assert images.images.shape == (1, 1, 16, 16)
    # the pipeline folder carries its explanation card (no explanations or evaluation were asked for here)
    card = json.loads((out / "pipeline" / "explanations" / "summary.json").read_text())
    assert card["pipeline"]["components"]["scheduler"]["class_name"] == "DDPMScheduler"  # what is on disk
    assert {"explanation figures", "evaluation results"} <= set(card["missing_sections"])
    assert (out / "pipeline" / "training_config.yaml").is_file() and summary["files"]["card"].endswith("README.md")


def test_quickstart_with_explanations_and_evaluation_writes_a_full_card(tmp_path):
    out = tmp_path / "qs"
    args = ["--max_train_steps", "3", "--num_samples", "2", "--num_inference_steps", "4", "--num_eval_samples", "64"]
    methods = ["--explain_methods", "trajectory", "gradcam", "integrated_gradients", "occlusion", "shap"]
    assert main(["quickstart", "--output_dir", str(out), *args, *methods]) == 0
    card = json.loads((out / "pipeline" / "explanations" / "summary.json").read_text())
    assert card["missing_sections"] == []
    assert set(card["faithfulness"]) >= {"gradcam", "integrated_gradients", "occlusion", "shap"}
    readme = (out / "pipeline" / "README.md").read_text()
    assert "FID (digits-CNN features, class-conditional samples, 10 classes in turn, guidance 1)" in readme
    assert "FID (digits-CNN features, unconditional null-class samples)" in readme
    assert "![gradcam_overlay](explanations/gradcam_overlay.png)" in readme


def test_quickstart_bad_input_is_one_clear_line(tmp_path, capsys):
    rc = main(["quickstart", "--output_dir", str(tmp_path), "--num_samples", "0"])
    assert rc == 2
    assert "num_samples` must be an int in [1, 256], got 0" in capsys.readouterr().err

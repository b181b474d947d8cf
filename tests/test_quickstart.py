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


def test_quickstart_bad_input_is_one_clear_line(tmp_path, capsys):
    rc = main(["quickstart", "--output_dir", str(tmp_path), "--num_samples", "0"])
    assert rc == 2
    assert "num_samples` must be an int in [1, 256], got 0" in capsys.readouterr().err

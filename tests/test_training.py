"""The training loop: tiny seeded runs in-process, through `accelerate launch`, and resumed after SIGKILL."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel

from diffusers_xai import DiffusionXAIPipeline
from diffusers_xai.training import NonFiniteLossError, TrainingConfig, list_checkpoints, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "train", "train_ddpm.py")
# a seeded run that writes nothing but the pipeline (no trackers, checkpoints or validation samples)
QUIET = dict(seed=0, report_to="none", validation_steps=None, checkpointing_steps=None)
# an 8x8 digits subset and a 4/8-channel UNet (as diffusers_xai.testing.tiny_unet): a step takes milliseconds
TINY = dict(
    dataset_name="sklearn-digits",
    resolution=8,
    channels=1,
    max_train_samples=40,
    block_out_channels=[4, 8],
    norm_num_groups=4,
    attention_head_dim=4,
    num_train_timesteps=50,
    train_batch_size=8,
    learning_rate=1e-3,
    lr_warmup_steps=1,
    **QUIET,
)


def tiny(out, **kw):
    return TrainingConfig(**{**TINY, "output_dir": str(out), **kw})


def state_dict(pipe):
    return {k: v.clone() for k, v in pipe.unet.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def subprocess_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_smoke_five_steps_saves_loadable_pipeline_card_and_logs(tmp_path):
    out = tmp_path / "run"
    config = tiny(
        out,
        max_train_steps=5,
        checkpointing_steps=4,
        validation_steps=5,
        validation_split=0.1,
        validation_batch_size=4,
        validation_num_inference_steps=2,
        report_to="tensorboard",
        hub_model_id="someone/tiny-digits",
    )
    result = train(config)

    assert (result.global_step, result.initial_global_step, result.stop_reason) == (5, 0, "max_train_steps")
    assert len(result.loss_history) == 5 and all(0 < v < 5 for v in result.loss_history)
    assert [s for s, _ in result.validation_loss_history] == [5]
    assert isinstance(result.pipeline, DiffusionXAIPipeline) and result.output_dir == str(out)
    # the saved pipeline holds the EMA weights, which differ from the raw weights of the checkpoint
    loaded = DiffusionXAIPipeline.from_pretrained(str(out))
    assert_same_weights(state_dict(loaded), state_dict(result.pipeline))
    assert os.path.isfile(out / "unet" / "diffusion_pytorch_model.safetensors")
    raw = UNet2DModel.from_pretrained(str(out / "checkpoint-4"), subfolder="unet")  # a diffusers folder
    assert not torch.equal(raw.conv_in.weight, loaded.unet.conv_in.weight)
    loaded.set_progress_bar_config(disable=True)
    images = loaded(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=2, output_type="pt")
    assert images.images.shape == (2, 1, 8, 8) and torch.isfinite(images.images).all()
    # explanation card (pushing it is tested in test_training_card.py), sample grid, tensorboard scalars
    card = (out / "README.md").read_text()
    assert "diffusers-xai" in card and "**optimizer steps**: 5" in card
    assert 'DiffusionXAIPipeline.from_pretrained("someone/tiny-digits")' in card
    assert os.path.isfile(out / "samples" / "step_0000005.png")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "logs" / "train_ddpm")).Reload()
    for tag in ("loss", "lr", "ema_decay"):
        assert [e.step for e in events.Scalars(tag)] == [1, 2, 3, 4, 5], tag
    assert [e.value for e in events.Scalars("loss")] == pytest.approx(result.loss_history)


def test_resume_is_exact_and_restores_ema(tmp_path):
    # gradient accumulation, v-prediction and a mid-epoch checkpoint (5 batches per epoch, 2 per step)
    kw = dict(max_train_steps=6, checkpointing_steps=2, gradient_accumulation_steps=2, prediction_type="v_prediction")
    full = train(tiny(tmp_path / "a", checkpoints_total_limit=2, **kw))
    assert [step for step, _ in list_checkpoints(tmp_path / "a")] == [4, 6]  # the total limit pruned checkpoint-2

    # resume from a copy of checkpoint-4, next to a leftover temp dir of an interrupted save that `latest` must skip
    shutil.copytree(tmp_path / "a" / "checkpoint-4", tmp_path / "b" / "checkpoint-4")
    shutil.copytree(tmp_path / "a" / "checkpoint-6", tmp_path / "b" / "checkpoint-8.tmp")
    resumed = train(tiny(tmp_path / "b", resume_from_checkpoint="latest", **kw))

    assert (resumed.initial_global_step, resumed.global_step) == (4, 6)
    assert resumed.loss_history == full.loss_history  # the loss curve continues exactly
    assert_same_weights(state_dict(resumed.pipeline), state_dict(full.pipeline))  # final EMA weights
    ema = EMAModel.from_pretrained(str(tmp_path / "b" / "checkpoint-6" / "unet_ema"), UNet2DModel)
    assert ema.optimization_step == 6


def test_nan_loss_stops_naming_the_step_without_checkpoint(tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"Training loss became nan at step 2 .*no checkpoint written"):
        train(
            tiny(
                out,
                learning_rate=1e30,
                lr_warmup_steps=0,
                lr_scheduler="constant",
                max_train_steps=5,
                checkpointing_steps=1,
                max_grad_norm=None,
            )
        )
    assert [step for step, _ in list_checkpoints(out)] == [1]
    assert not os.path.exists(out / "checkpoint-2.tmp") and not os.path.exists(out / "model_index.json")


def test_time_budget_stops_and_saves(tmp_path):
    # also the bf16 autocast path (CPU supports it), without EMA
    config = tiny(tmp_path / "t", max_train_steps=10**4, max_train_minutes=1e-9, use_ema=False, mixed_precision="bf16")
    result = train(config)
    assert result.stop_reason == "max_train_minutes" and result.global_step == 1
    assert DiffusionXAIPipeline.from_pretrained(str(tmp_path / "t")).unet.config.sample_size == 8


def _write_config(tmp_path, **kw):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "out"), **kw}))
    return str(path)


def test_accelerate_launch_five_steps(tmp_path):
    config = _write_config(tmp_path, max_train_steps=5)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--cpu",
        SCRIPT,
        "--config",
        config,
        "--checkpointing_steps",
        "5",
    ]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "after 5 steps" in proc.stdout
    state = json.loads((tmp_path / "out" / "checkpoint-5" / "trainer_state.json").read_text())
    assert state["global_step"] == 5 and len(state["loss_history"]) == 5
    assert DiffusionXAIPipeline.from_pretrained(str(tmp_path / "out")).unet.config.in_channels == 1


def test_resume_after_sigkill(tmp_path):
    config = _write_config(tmp_path, max_train_steps=100_000, checkpointing_steps=2, checkpoints_total_limit=2)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "--config", config],
        env=subprocess_env(),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not list_checkpoints(out):
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert not os.path.exists(out / "model_index.json")  # it really died mid-run
    step, latest = list_checkpoints(out)[-1]
    saved = json.loads(open(os.path.join(latest, "trainer_state.json")).read())["loss_history"]

    resumed = train(
        TrainingConfig.from_yaml(config, {"resume_from_checkpoint": "latest", "max_train_steps": step + 3})
    )
    assert (resumed.initial_global_step, resumed.global_step) == (step, step + 3)
    assert resumed.loss_history[:step] == saved and len(resumed.loss_history) == step + 3
    pipe = DiffusionXAIPipeline.from_pretrained(str(out))
    assert_same_weights(state_dict(pipe), state_dict(resumed.pipeline))


def test_cli_train_command(tmp_path, capsys):
    from diffusers_xai.cli import main

    config = _write_config(tmp_path)
    # bad input: one clear line on stderr and exit code 2, no traceback
    assert main(["train", "--config", config, "--learing_rate", "1e-3"]) == 2
    assert re.search(r"'learing_rate'.*Did you mean 'learning_rate'", capsys.readouterr().err)
    assert main(["train", "--config", config, "--max_train_steps", "2", "--use_ema", "false"]) == 0
    assert "after 2 steps" in capsys.readouterr().out
    assert DiffusionXAIPipeline.from_pretrained(str(tmp_path / "out")).unet.config.sample_size == 8

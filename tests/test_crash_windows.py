"""Kills inside the write windows: a checkpoint being saved and a generation shard being written.

`DIFFUSERS_XAI_CRASH_AT` (test-only, `diffusers_xai/utils/faults.py`) SIGKILLs the process between writing the temp
files and renaming them into place. The resumed run must start from the last complete state and end bit-identical
to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from diffusers_xai.training.checkpointing import list_checkpoints
from tests.test_training import REPO, SCRIPT, TINY, subprocess_env

pytestmark = pytest.mark.slow


def _run(args, crash=None, cwd=None):
    env = subprocess_env()
    env.pop("DIFFUSERS_XAI_CRASH_AT", None)
    if crash:
        env["DIFFUSERS_XAI_CRASH_AT"] = crash
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def _weights(folder):
    return load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))


def _config(tmp_path, name, **kw):
    path = tmp_path / f"{name}.yaml"
    values = {**TINY, "output_dir": str(tmp_path / name), "max_train_steps": 6, "checkpointing_steps": 2}
    values.update(explanation_card=False, eval_samples=None, seed=0, **kw)
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_kill_inside_a_checkpoint_write_resumes_from_the_last_complete_one(tmp_path):
    full = _run([sys.executable, SCRIPT, "--config", _config(tmp_path, "full")])
    assert full.returncode == 0, full.stderr[-3000:]

    crashed = _config(tmp_path, "crashed")
    out = tmp_path / "crashed"
    proc = _run([sys.executable, SCRIPT, "--config", crashed], crash="checkpoint:2")  # while saving checkpoint-4
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert [step for step, _ in list_checkpoints(out)] == [2]  # checkpoint-4 never became a checkpoint
    half = out / "checkpoint-4.tmp"
    assert half.is_dir() and any(half.iterdir()) and not (half / "trainer_state.json").exists()
    assert not (out / "model_index.json").exists()

    resumed = _run([sys.executable, SCRIPT, "--config", crashed, "--resume_from_checkpoint", "latest"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "after 6 steps" in resumed.stdout
    assert not half.exists()  # the leftover temp dir was cleaned up
    a, b = _weights(tmp_path / "full"), _weights(out)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)  # bit-identical to the uninterrupted run


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "data").glob("*.parquet"))}


def test_kill_inside_a_shard_write_and_rerun_is_bit_identical(tmp_path):
    from diffusers_xai.testing import tiny_pipeline

    tiny_pipeline(seed=0).save_pretrained(tmp_path / "pipe")
    cli = [sys.executable, "-m", "diffusers_xai.cli", "generate", "--pipeline", str(tmp_path / "pipe")]
    cli += ["--num_samples", "6", "--shard_size", "2", "--num_inference_steps", "3", "--seed", "5", "--out"]
    full = _run([*cli, str(tmp_path / "full")], cwd=REPO)
    assert full.returncode == 0, full.stderr[-3000:]

    out = tmp_path / "crashed"
    proc = _run([*cli, str(out)], crash="shard:2", cwd=REPO)  # the second shard is written, not yet renamed
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert list(_digests(out)) == ["train-00000-of-00003.parquet"]
    leftovers = [p.name for p in (out / "data").iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".train-00001-of-00003.parquet.")

    rerun = _run([*cli, str(out)], cwd=REPO)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _digests(out) == _digests(tmp_path / "full") and len(_digests(out)) == 3
    assert not [p for p in (out / "data").iterdir() if p.name.endswith(".tmp")]
    assert os.path.isfile(out / "README.md")

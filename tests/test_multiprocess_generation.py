"""`diffusers-xai generate` under `accelerate launch` with 2 CPU processes (gloo): determinism and kill/resume.

The launches take 40-90 s each on 2 shared cores, so they are `slow`; the accelerate config files are checked
in the default run.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from diffusers_xai.generation import generate_dataset, shard_path
from diffusers_xai.testing import tiny_pipeline

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "train" / "configs" / "accelerate"


def subprocess_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def launch_cmd(*args):
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(CONFIGS / "multi_cpu.yaml"),
        "-m",
        "diffusers_xai.cli",
        "generate",
        *map(str, args),
    ]


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((directory / "data").glob("*.parquet"))}


@pytest.mark.parametrize("name", ["multi_cpu", "multi_gpu_ddp", "fsdp", "deepspeed_zero2"])
def test_accelerate_config_files_pass_accelerate_launch_validation(name):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / f"{name}.yaml"), "script.py"])
    args, defaults, _ = _validate_launch_command(args)
    assert args.num_processes == 2 and defaults.num_machines == 1
    expected = {"fsdp": "use_fsdp", "deepspeed_zero2": "use_deepspeed"}.get(name, "multi_gpu")
    assert getattr(args, expected) is True


@pytest.fixture
def saved_pipeline(tmp_path):
    pipe = tiny_pipeline("ddpm")
    pipe.save_pretrained(tmp_path / "pipe")
    return pipe, tmp_path / "pipe"


@pytest.mark.slow
def test_two_processes_write_the_same_bytes_as_one(saved_pipeline, tmp_path):
    pipe, path = saved_pipeline
    args = ["--num_samples", 10, "--shard_size", 2, "--batch_size", 2, "--num_inference_steps", 3, "--explain"]
    proc = subprocess.run(
        launch_cmd("--pipeline", path, "--out", tmp_path / "two", *args),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "shards (process 1)" in proc.stderr  # the second process did generate shards
    torch.set_num_threads(1)
    generate_dataset(
        pipe, tmp_path / "one", 10, shard_size=2, batch_size=2, num_inference_steps=3, explain=True, source_model="x"
    )
    two, one = digests(tmp_path / "two"), digests(tmp_path / "one")
    assert len(two) == 5 and two == one


@pytest.mark.slow
def test_killed_process_fails_clearly_and_rerun_completes_missing_shards(saved_pipeline, tmp_path):
    pipe, path = saved_pipeline
    out = tmp_path / "ds"
    num_shards = 24
    args = ["--pipeline", path, "--out", out, "--num_samples", 2 * num_shards, "--shard_size", 2]
    args += ["--batch_size", 2, "--num_inference_steps", 20]
    launcher = subprocess.Popen(
        launch_cmd(*args), env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # wait for the first finished shard, then SIGKILL the rank-1 worker (a child of the launcher we started)
        deadline = time.monotonic() + 400
        while not list(out.glob("data/*.parquet")):
            assert launcher.poll() is None, launcher.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no shard was written in time"
            time.sleep(0.2)
        workers = [p for p in psutil.Process(launcher.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
        assert len(workers) == 1
        os.kill(workers[0].pid, signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode != 0
    assert "ChildFailedError" in stderr and "Signal 9 (SIGKILL)" in stderr

    finished = digests(out)
    assert 0 < len(finished) < num_shards  # killed mid-generation; only whole shards are visible
    mtimes = {name: (out / "data" / name).stat().st_mtime_ns for name in finished}

    proc = subprocess.run(launch_cmd(*args), env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"({len(finished)} shards were already complete)" in proc.stdout
    assert {name: (out / "data" / name).stat().st_mtime_ns for name in finished} == mtimes  # not rewritten
    assert not list((out / "data").glob(".*.tmp"))

    torch.set_num_threads(1)
    reference = generate_dataset(
        pipe, tmp_path / "ref", 2 * num_shards, shard_size=2, batch_size=2, num_inference_steps=20, source_model="x"
    )
    assert digests(out) == digests(tmp_path / "ref")
    assert shard_path(out, num_shards - 1, num_shards).name == reference.shard_paths[-1].name

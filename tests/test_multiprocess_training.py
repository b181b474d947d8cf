"""`train/train_ddpm.py` under `accelerate launch` with 2 CPU processes (gloo): identical weights on both ranks,
and exact resume in the 2-process setting. Each launch takes about a minute on 2 shared cores: `slow`."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tests import test_training

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train" / "train_ddpm.py"
ACCELERATE_CONFIG = REPO / "train" / "configs" / "accelerate" / "multi_cpu.yaml"
# the 8x8 digits subset and 4/8-channel UNet of tests/test_training.py: a step takes milliseconds. No EMA: the main
# process copies the EMA weights into its model before saving, which would make the per-rank weights differ by design.
TINY = {
    **test_training.TINY,
    "train_batch_size": 4,
    "use_ema": False,
    "checkpointing_steps": 2,
}

# Test-only: every rank hashes the weights of the models it prepared when the trainer ends training, and writes
# `rank-<i>.json`; train_ddpm.py itself runs unchanged (as `__main__`).
WRAPPER = """
import hashlib, json, os, runpy, sys

import accelerate
import torch

_end_training = accelerate.Accelerator.end_training


def end_training(self):
    digest = hashlib.sha256()
    for model in self._models:
        for key, value in sorted(self.unwrap_model(model).state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    record = {
        "rank": self.process_index,
        "num_processes": self.num_processes,
        "distributed_type": str(self.distributed_type),
        "sha256": digest.hexdigest(),
    }
    with open(os.path.join(os.environ["RANK_RECORD_DIR"], f"rank-{self.process_index}.json"), "w") as f:
        json.dump(record, f)
    return _end_training(self)


accelerate.Accelerator.end_training = end_training
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def launch(tmp_path: Path, output_dir: Path, *extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    records = output_dir.with_name(output_dir.name + "-ranks")
    records.mkdir(parents=True, exist_ok=True)
    wrapper = tmp_path / "rank_hash_wrapper.py"
    wrapper.write_text(WRAPPER)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "output_dir": str(output_dir)}))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["RANK_RECORD_DIR"] = str(records)
    # the trainer builds `Accelerator()` without `cpu=`; on a machine without GPUs accelerate then only forms the
    # gloo group when told to use the CPU
    env["ACCELERATE_USE_CPU"] = "1"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CONFIG)]
    cmd += [str(wrapper), str(SCRIPT), "--config", str(config), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((records / f"rank-{i}.json").read_text()) for i in range(2)]
    return proc, ranks


def unet_weights(directory: Path) -> dict:
    return load_file(str(directory / "unet" / "diffusion_pytorch_model.safetensors"))


@pytest.mark.slow
def test_two_process_training_syncs_ranks_and_resumes_exactly(tmp_path):
    # run A: 4 steps on 2 processes, a checkpoint every 2 steps
    proc, ranks = launch(tmp_path, tmp_path / "a", "--max_train_steps", "4")
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert {r["distributed_type"] for r in ranks} == {"DistributedType.MULTI_CPU"}
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # DDP kept the ranks in sync
    card = (tmp_path / "a" / "README.md").read_text()  # written once, by the main process
    assert "**effective batch size**: 8" in card and "**processes**: 2" in card
    assert "after 4 steps" in proc.stdout  # printed by the main process only
    assert proc.stdout.count("Saved DiffusionXAIPipeline") == 1
    state = json.loads((tmp_path / "a" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4

    # run B: resume from a copy of checkpoint-2 on 2 processes; it must land on run A's weights exactly
    shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "b" / "checkpoint-2")
    proc, resumed = launch(tmp_path, tmp_path / "b", "--max_train_steps", "4", "--resume_from_checkpoint", "latest")
    assert resumed[0]["sha256"] == resumed[1]["sha256"] == ranks[0]["sha256"]
    a, b = unet_weights(tmp_path / "a"), unet_weights(tmp_path / "b")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    resumed_state = json.loads((tmp_path / "b" / "checkpoint-4" / "trainer_state.json").read_text())
    assert resumed_state["global_step"] == 4 and resumed_state["loss_history"] == state["loss_history"]

"""Atomic, resumable checkpoints on top of `accelerator.save_state` / `load_state`.

accelerate writes a checkpoint file by file, so a run killed mid-save leaves a folder that looks like a checkpoint
but does not load. We save into `checkpoint-N.tmp`, fsync, and only then `os.replace` it to `checkpoint-N`:
`checkpoint-N` either exists complete or not at all, and `latest` only considers complete names.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

import torch
from safetensors.torch import load_file, save_file

from ..utils.faults import crash_point

__all__ = [
    "CHECKPOINT_PATTERN",
    "TRAINER_STATE_NAME",
    "find_latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "resolve_checkpoint",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE_NAME = "trainer_state.json"
NOISE_RNG_NAME = "noise_rng_{}.safetensors"


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, str]]:
    """Complete checkpoints in `output_dir` as `(global_step, path)`, oldest first; temp dirs are ignored."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT_PATTERN.match(name)
        path = os.path.join(output_dir, name)
        if match and os.path.isfile(os.path.join(path, TRAINER_STATE_NAME)):
            found.append((int(match.group(1)), path))
    return sorted(found)


def find_latest_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest complete `checkpoint-N` in `output_dir`, or `None`."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1][1] if checkpoints else None


def resolve_checkpoint(value: str, output_dir: str | os.PathLike) -> str | None:
    """
    Turn `resume_from_checkpoint` into a folder: `"latest"` → newest in `output_dir` (or `None` if there is none),
    otherwise a path or a folder name inside `output_dir`, which must be a complete checkpoint.
    """
    if value == "latest":
        latest = find_latest_checkpoint(output_dir)
        return _check_inside(latest, value, output_dir) if latest is not None else None
    for path in (value, os.path.join(output_dir, value)):
        if os.path.isdir(path):
            if not os.path.isfile(os.path.join(path, TRAINER_STATE_NAME)):
                raise ValueError(
                    f"`resume_from_checkpoint` {value!r} is not a complete checkpoint (no {TRAINER_STATE_NAME}); "
                    "it may be an interrupted save. Pass 'latest' or another checkpoint-N folder."
                )
            return _check_inside(path, value, output_dir)
    available = [os.path.basename(p) for _, p in list_checkpoints(output_dir)]
    raise ValueError(
        f"`resume_from_checkpoint` {value!r} does not exist (nor as {os.path.join(output_dir, value)!r}). "
        f"Pass 'latest' or one of the checkpoints in {str(output_dir)!r}: {available or 'none yet'}."
    )


def _check_inside(path: str, value: str, output_dir: str | os.PathLike) -> str:
    """
    `path` if it is a `checkpoint-N` folder inside `output_dir` (symlinks resolved). Resuming unpickles the
    optimizer, scheduler and RNG states accelerate saved (`torch.load` / pickle), which can run code: only a run's
    own checkpoints are trusted, never a folder from elsewhere.
    """
    real, root = os.path.realpath(path), os.path.realpath(output_dir)
    if os.path.dirname(real) != root or not CHECKPOINT_PATTERN.match(os.path.basename(real)):
        raise ValueError(
            f"`resume_from_checkpoint` {value!r} is not a checkpoint-N folder of output_dir {str(output_dir)!r}: "
            "resuming unpickles optimizer and RNG states, which is only safe for this run's own checkpoints. Resume "
            "inside the run's output_dir, or copy the checkpoint there if you trust where it came from."
        )
    return path


def _fsync_tree(path: str) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(path)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some platforms (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    accelerator, output_dir: str, global_step: int, trainer_state: dict, noise_generator: torch.Generator
) -> str:
    """
    Save `accelerator.save_state` + `trainer_state` (JSON) + the noise generator (safetensors) as
    `output_dir/checkpoint-{global_step}`, atomically. Call on every process.
    """
    final = os.path.join(output_dir, f"checkpoint-{global_step}")
    tmp = final + ".tmp"
    if accelerator.is_main_process and os.path.exists(tmp):
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    rng_state = {"state": noise_generator.get_state()}
    save_file(rng_state, os.path.join(tmp, NOISE_RNG_NAME.format(accelerator.process_index)))
    crash_point("checkpoint")  # tests only: a kill with the state half-saved (no trainer_state.json, no rename)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state_path = os.path.join(tmp, TRAINER_STATE_NAME)
        with open(state_path, "w", encoding="utf-8") as f:
            json.dump({"global_step": global_step, **trainer_state}, f, default=str)
        _fsync_tree(tmp)
        if os.path.exists(final):  # re-saving a step (resumed from an older checkpoint): swap, then drop the old
            old = final + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(output_dir)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: str, noise_generator: torch.Generator) -> dict:
    """`accelerator.load_state(path)` (the registered hooks restore model and EMA), then the noise generator;
    returns the trainer state saved with it."""
    accelerator.load_state(path)
    rng_path = os.path.join(path, NOISE_RNG_NAME.format(accelerator.process_index))
    if os.path.isfile(rng_path):
        noise_generator.set_state(load_file(rng_path)["state"])
    else:
        logger.warning(f"{rng_path} not found (different number of processes?); noise will not replay exactly.")
    with open(os.path.join(path, TRAINER_STATE_NAME), encoding="utf-8") as f:
        return json.load(f)


def prune_checkpoints(output_dir: str, total_limit: int | None) -> list[str]:
    """Delete the oldest complete checkpoints beyond `total_limit` and leftover temp dirs; returns what was removed.
    Runs after a new checkpoint is in place, so a kill while pruning never leaves fewer than `total_limit`."""
    removed = []
    for name in os.listdir(output_dir):
        if name.startswith("checkpoint-") and name.endswith((".tmp", ".old")):
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
            removed.append(name)
    if total_limit is not None:
        checkpoints = list_checkpoints(output_dir)
        for _, path in checkpoints[: max(0, len(checkpoints) - total_limit)]:
            shutil.rmtree(path)
            removed.append(os.path.basename(path))
    if removed:
        logger.info(f"Removed checkpoints {removed} (checkpoints_total_limit={total_limit}).")
    return removed

#!/usr/bin/env python
"""Rebuild a bundled model of the Space from its training config.

    python spaces/build_checkpoint.py                               # digits → spaces/digits-ddpm/
    python spaces/build_checkpoint.py --modality tabular            # wine   → spaces/wine-tabddpm/
    python spaces/build_checkpoint.py --modality timeseries         # sines  → spaces/sines-timeseries/
    python spaces/build_checkpoint.py --max_train_minutes 30        # extra flags go to train/train_ddpm.py
    python spaces/build_checkpoint.py --from_run runs/digits        # package a finished run instead of training

The pipeline folder written by `train/train_ddpm.py` is copied without its checkpoints, logs and samples. The
denoiser's float32 weights (`unet/` or `denoiser/`) are stored in float16, which halves their size; the Space
loads them back as float32 on CPU. The preprocessor statistics keep their precision. The copy then replaces
the bundled folder in one rename.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODALITIES = {  # modality → (training config, bundled folder)
    "image": ("digits.yaml", "digits-ddpm"),
    "tabular": ("wine.yaml", "wine-tabddpm"),
    "timeseries": ("sines.yaml", "sines-timeseries"),
}
DENOISER_FOLDERS = ("unet", "denoiser")
SKIPPED = ("checkpoint-*", "logs", "samples", "*.tmp")
MAX_BYTES = 2 * 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--modality", choices=sorted(MODALITIES), default="image")
    parser.add_argument("--config", default=None, help="Training config (default: the modality's).")
    parser.add_argument("--from_run", default=None, help="Package this finished run instead of training.")
    parser.add_argument("--output", default=None, help="Where the Space reads the model (default: the modality's).")
    args, extra = parser.parse_known_args(argv)
    config, folder = MODALITIES[args.modality]
    args.config = args.config or str(ROOT / "train" / "configs" / config)
    args.output = args.output or str(HERE / folder)
    args.train_args = extra
    return args


def train(config: str, run_dir: Path, extra: list[str]) -> None:
    command = [sys.executable, str(ROOT / "train" / "train_ddpm.py"), "--config", config, "--output_dir", str(run_dir)]
    subprocess.run([*command, *extra], check=True)


def to_half(path: Path) -> None:
    """Rewrite a safetensors file with its float32 tensors as float16 (metadata kept)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=metadata)


def package(run_dir: Path, output: Path) -> Path:
    """Copy the run's pipeline, halve the denoiser weights and atomically replace `output`."""
    if not (run_dir / "model_index.json").is_file():
        raise ValueError(f"{run_dir} holds no pipeline (no model_index.json); did the training run finish?")
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}."))
    try:
        shutil.copytree(run_dir, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*SKIPPED))
        for folder in DENOISER_FOLDERS:
            for weights in (staging / folder).glob("*.safetensors"):
                to_half(weights)
        card = staging / "README.md"
        if card.is_file():
            text = card.read_text().replace(str(run_dir), f"spaces/{output.name}")
            text += (
                "\n\n## Storage\n\nPackaged for the Space by `spaces/build_checkpoint.py`: the (EMA) denoiser weights "
                "are stored in float16; the Space loads them as float32 on CPU.\n"
            )
            card.write_text(text)
        size = sum(f.stat().st_size for f in staging.rglob("*.safetensors"))
        if size > MAX_BYTES:
            raise ValueError(f"The packaged weights take {size / 2**20:.2f} MiB; keep a bundled model under 2 MiB.")
        old = output.with_name(f".{output.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if output.exists():
            os.replace(output, old)
        os.replace(staging, output)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"Wrote {output} ({size / 2**20:.2f} MiB of weights).")
    return output


def main(args: argparse.Namespace) -> int:
    output = Path(args.output).resolve()
    if args.from_run:
        package(Path(args.from_run).resolve(), output)
        return 0
    with tempfile.TemporaryDirectory(prefix=f"{output.name}-run-") as run_dir:
        train(args.config, Path(run_dir), args.train_args)
        package(Path(run_dir), output)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))

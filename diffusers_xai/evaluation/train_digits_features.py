"""
Train the digits-CNN feature extractor shipped in `diffusers_xai/evaluation/digits_cnn/`, deterministically.

    python -m diffusers_xai.evaluation.train_digits_features [--output_dir DIR] [--epochs 40] [--seed 0]

Same torch build + same arguments → the same weights, bit for bit (one thread, deterministic algorithms, seeded
generators for the split, the shuffling and the augmentation). The held-out accuracy is printed and written to the
folder's README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from diffusers_xai.evaluation.features import DIGITS_CNN_DIR, DigitsCNN
from diffusers_xai.modalities.image.data import load_digits_tensors

CARD = """---
library_name: diffusers_xai
tags: [diffusers-xai, feature-extractor, fid]
---
# digits-CNN feature extractor

A {num_params:,}-parameter CNN classifier of scikit-learn's `load_digits` (8x8 upscaled to 16x16, bilinear), used
by `diffusers_xai.evaluation` as the offline feature space for FID/KID/precision-recall-density-coverage and its
logits for the Inception Score. Numbers computed with it are reported as "FID (digits-CNN features)" and are not
comparable with InceptionV3-based numbers.

- Input: `[N, 1, 16, 16]` in [0, 1] (the module maps to [-1, 1]); features: 64-D penultimate layer (pre-ReLU),
  divided by their RMS over the training digits ({feature_scale:.4f}) so they are O(1) per dimension.
- Training: {num_train} digits (stratified 80/20 split, seed {seed}), {epochs} epochs of Adam (lr {lr}), batch
  {batch_size}, random ±1 pixel shifts and Gaussian noise (σ = {noise}) as augmentation, one CPU thread.
- Held-out accuracy on the other {num_val} digits: **{val_accuracy:.4f}** (train {train_accuracy:.4f}).
- Reproduce: `python -m diffusers_xai.evaluation.train_digits_features` (torch {torch_version});
  model.safetensors sha256 `{sha256}`.
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=DIGITS_CNN_DIR)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--noise", type=float, default=0.1, help="std of the Gaussian noise augmentation ([-1, 1]).")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _augment(x: torch.Tensor, generator: torch.Generator, noise: float) -> torch.Tensor:
    # ±1 pixel shifts (the background is -1, so pad with -1) and Gaussian pixel noise.
    shifts = torch.randint(-1, 2, (2,), generator=generator).tolist()
    x = F.pad(x, (1, 1, 1, 1), value=-1.0)
    x = x[:, :, 1 + shifts[0] : 1 + shifts[0] + x.shape[2] - 2, 1 + shifts[1] : 1 + shifts[1] + x.shape[3] - 2]
    return (x + noise * torch.randn(x.shape, generator=generator)).clamp(-1, 1)


@torch.no_grad()
def _accuracy(model: DigitsCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model.logits((x + 1) / 2).argmax(1) == y).float().mean())


def train(args) -> tuple[DigitsCNN, dict]:
    from sklearn.model_selection import train_test_split

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x, y = load_digits_tensors(resolution=16)
    idx_train, idx_val = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y.numpy(), random_state=args.seed)
    x_train, y_train, x_val, y_val = x[idx_train], y[idx_train], x[idx_val], y[idx_val]
    torch.manual_seed(args.seed)
    model = DigitsCNN()
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            inputs = _augment(x_train[batch], generator, args.noise)
            loss = F.cross_entropy(model.logits((inputs + 1) / 2), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        model.feature_scale.copy_(model.penultimate((x_train + 1) / 2).square().mean().sqrt())
    info = {
        "num_train": len(idx_train),
        "num_val": len(idx_val),
        "train_accuracy": _accuracy(model, x_train, y_train),
        "val_accuracy": _accuracy(model, x_val, y_val),
        "num_params": sum(p.numel() for p in model.parameters()),
        "feature_scale": float(model.feature_scale),
    }
    return model, info


def save(model: DigitsCNN, info: dict, args) -> str:
    """Write config.json, model.safetensors and README.md into `args.output_dir` atomically per file."""
    os.makedirs(args.output_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=args.output_dir, prefix=".tmp-")
    try:
        model.save_pretrained(tmp)
        with open(os.path.join(tmp, "model.safetensors"), "rb") as f:
            sha256 = hashlib.sha256(f.read()).hexdigest()
        # the card names the run's flags (seed, epochs, batch_size, noise) by their names; lr is --learning_rate
        card = CARD.format(**info, **vars(args), lr=args.learning_rate, torch_version=torch.__version__, sha256=sha256)
        with open(os.path.join(tmp, "README.md"), "w", encoding="utf-8") as f:
            f.write(card)
        for name in ("config.json", "model.safetensors", "README.md"):
            os.chmod(os.path.join(tmp, name), 0o644)
            os.replace(os.path.join(tmp, name), os.path.join(args.output_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sha256


def main(args) -> int:
    model, info = train(args)
    sha256 = save(model, info, args)
    print(
        f"digits-CNN: held-out accuracy {info['val_accuracy']:.4f} (train {info['train_accuracy']:.4f}), "
        f"{info['num_params']:,} parameters → {args.output_dir} (sha256 {sha256[:16]}…)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(parse_args()))

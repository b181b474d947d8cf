"""Labelled synthetic digits: how often the shipped digits-CNN reads the `label` that `diffusers-xai generate
--class_labels` wrote, per guidance scale, on one class-conditional model.

    diffusers-xai quickstart --output_dir outputs/quickstart      # trains a class-conditional digits model
    python bench/labelled_generation.py --pipeline outputs/quickstart/pipeline [--num_samples 1000] \
        [--guidance_scales 1 3] [--out_dir outputs/labelled]

Each scale writes a dataset with `generate_dataset` exactly as the command does (sample `i` of class `i mod 10` with
seed `i`; DPM-Solver++ with 20 steps, as the quickstart's class grid), reads it back with `datasets.load_dataset`
and classifies its PNG images with the digits-CNN the evaluation uses. The agreement is the share of images whose
predicted digit is their `label`; the per-class minimum shows the weakest digit. Seconds are the generation's wall
time on this machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import datasets
import numpy as np
import torch
from _common import bench_parser

from diffusers_xai import DiffusionXAIPipeline
from diffusers_xai.evaluation import resolve_feature_extractor
from diffusers_xai.generation import generate_dataset


def label_agreement(folder: Path) -> tuple[float, list[float]]:
    """The share of a generated dataset's images the digits-CNN assigns to their `label`, overall and per class."""
    ds = datasets.load_dataset(str(folder), split="train", download_mode="force_redownload")
    images = torch.from_numpy(np.stack([np.asarray(im.convert("L"), dtype=np.float32) / 255.0 for im in ds["image"]]))
    labels = torch.tensor(ds["label"])
    predicted = resolve_feature_extractor("digits-cnn").logits(images[:, None]).argmax(dim=1)
    agree = (predicted == labels).float()
    per_class = [float(agree[labels == k].mean()) for k in range(int(labels.max()) + 1)]
    return float(agree.mean()), per_class


def main() -> None:
    parser = bench_parser(__doc__, threads=2)
    parser.add_argument("--pipeline", required=True, help="A class-conditional DiffusionXAIPipeline folder.")
    parser.add_argument("--num_samples", type=int, default=1000)
    parser.add_argument("--guidance_scales", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--out_dir", default="outputs/labelled", help="One dataset folder per scale goes here.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = DiffusionXAIPipeline.from_pretrained(args.pipeline)
    if pipe.num_classes is None:
        parser.error(f"--pipeline {args.pipeline} is unconditional; train a class-conditional model (the quickstart).")
    pipe.set_scheduler("dpmsolver")
    labels = pipe.class_names or list(range(pipe.num_classes))
    rows = []
    for scale in args.guidance_scales:
        folder = Path(args.out_dir) / f"guidance-{scale:g}"
        start = time.perf_counter()
        kw = {"shard_size": 250, "batch_size": 50, "num_inference_steps": 20, "source_model": args.pipeline}
        generate_dataset(pipe, folder, args.num_samples, class_labels=labels, guidance_scale=scale, **kw)
        seconds = time.perf_counter() - start
        mean, per_class = label_agreement(folder)
        weakest = int(np.argmin(per_class))
        rows.append(f"| {scale:g} | {args.num_samples} | {mean:.3f} | {labels[weakest]}: {per_class[weakest]:.2f} |"
                    f" {seconds:.0f} |")  # fmt: skip
    print("| guidance | images | label agreement | weakest class | seconds |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

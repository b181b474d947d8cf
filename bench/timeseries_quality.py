"""TimeGAN sines: discriminative and predictive scores of TimeSeriesXAIPipeline, per denoiser, in one run.

Protocol of TimeGAN / Diffusion-TS (length 24, 5 channels, 10,000 windows): each `--architectures` entry trains
through the shared trainer (`train/configs/sines.yaml`, `--steps` steps, `--threads` CPU threads), samples as many
windows as the real set, and is scored with `diffusers_xai.evaluation.timeseries`:

- discriminative score: a post-hoc GRU classifier real vs synthetic, |accuracy - 0.5| on a 20% split (lower better),
- predictive score: a GRU trained on synthetic windows to predict the last channel one step ahead, MAE on real
  windows (train-on-synthetic-test-on-real), beside the same GRU trained on real windows.

`transformer` and `conv` are our `TimeSeriesDenoiser`; `unet1d` is diffusers' stock `UNet1DModel` (the stock path the
ratios are printed against). A second draw of real sines (another seed) scored the same way gives the floor of both
metrics at this evaluation budget. Published anchors (length 24): Diffusion-TS 0.006 / 0.093, TimeGAN 0.011 / 0.093.

    python bench/timeseries_quality.py [--architectures transformer conv unet1d] [--steps 6000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from diffusers_xai.evaluation.timeseries import discriminative_score, predictive_score  # noqa: E402
from diffusers_xai.modalities.timeseries.data import make_sines  # noqa: E402
from diffusers_xai.modalities.timeseries.pipeline_timeseries import TimeSeriesXAIPipeline  # noqa: E402
from diffusers_xai.training import TrainingConfig, train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHORS = {"Diffusion-TS": (0.006, 0.093), "TimeGAN": (0.011, 0.093)}
# parameter counts of the same order: transformer 332k, conv (6 blocks) 233k, UNet1DModel (widths 32, 64) 248k
ARCH_OPTIONS = {"transformer": {}, "conv": {"num_layers": 6}, "unet1d": {"num_layers": 2, "hidden_dim": 32}}


def fit_and_sample(architecture: str, args, workdir: str) -> tuple[np.ndarray, float, int]:
    config = TrainingConfig.from_yaml(
        os.path.join(REPO, "train", "configs", "sines.yaml"),
        {
            "output_dir": os.path.join(workdir, architecture),
            "architecture": architecture,
            "max_train_steps": args.steps,
            "num_series": args.num_series,
            "validation_steps": None,
            "checkpointing_steps": None,
            "seed": args.seed,
            **ARCH_OPTIONS[architecture],
        },
    )
    start = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - start
    pipe = TimeSeriesXAIPipeline.from_pretrained(config.output_dir)
    pipe.set_progress_bar_config(disable=True)
    params = sum(p.numel() for p in pipe.denoiser.parameters())
    if args.sampler != "ddpm":
        pipe.set_scheduler(args.sampler)
    generator = torch.Generator().manual_seed(args.seed)
    chunks = []
    for start_i in range(0, args.num_series, args.batch_size):
        n = min(args.batch_size, args.num_series - start_i)
        chunks.append(pipe(num_series=n, generator=generator, num_inference_steps=args.sample_steps).series)
    return np.concatenate(chunks).astype(np.float32), seconds, params


def scores(real: np.ndarray, synthetic: np.ndarray, args) -> tuple[float, float, float]:
    disc = discriminative_score(real, synthetic, iterations=args.disc_iterations, seed=args.seed, progress=False)
    tstr, trtr = predictive_score(real, synthetic, iterations=args.pred_iterations, seed=args.seed, progress=False)
    return disc, tstr, trtr


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    real = make_sines(args.num_series, 24, 5, seed=args.seed)  # the training windows (sines.yaml: seed -> data)
    results = {}
    if not args.no_floor:
        disc, tstr, trtr = scores(real, make_sines(args.num_series, 24, 5, seed=args.seed + 1), args)
        results["real sines (other seed)"] = {"discriminative": disc, "predictive": tstr, "predictive_real": trtr}
    with tempfile.TemporaryDirectory() as workdir:
        for arch in args.architectures:
            synthetic, seconds, params = fit_and_sample(arch, args, workdir)
            disc, tstr, trtr = scores(real, synthetic, args)
            results[arch] = {
                "discriminative": disc,
                "predictive": tstr,
                "predictive_real": trtr,
                "train_s": seconds,
                "params": params,
            }
    print(
        f"\n== sines: {args.num_series} windows x 24 x 5, {args.steps} training steps, {args.sampler} "
        f"{args.sample_steps} sampling steps, {args.threads} threads, GRU {args.disc_iterations}/"
        f"{args.pred_iterations} it =="
    )
    print(f"{'model':<26}{'discr.':>9}{'pred. TSTR':>12}{'pred. TRTR':>12}{'train s':>9}{'params':>9}")
    for name, r in results.items():
        extra = f"{r['train_s']:>9.0f}{r['params']:>9d}" if "train_s" in r else ""
        print(f"{name:<26}{r['discriminative']:>9.3f}{r['predictive']:>12.3f}{r['predictive_real']:>12.3f}{extra}")
    for name, (d, p) in ANCHORS.items():
        print(f"{name + ' (published)':<26}{d:>9.3f}{p:>12.3f}")
    if "unet1d" in results:
        stock = results["unet1d"]
        for arch in [a for a in results if a in ("transformer", "conv")]:
            ours = results[arch]
            print(
                f"{arch} / stock UNet1DModel: discriminative {ours['discriminative'] / stock['discriminative']:.2f}, "
                f"predictive {ours['predictive'] / stock['predictive']:.3f}"
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", nargs="+", default=["transformer"], choices=sorted(ARCH_OPTIONS))
    parser.add_argument("--steps", type=int, default=6000, help="Training steps (sines.yaml: 6000).")
    parser.add_argument("--num-series", type=int, default=10000)
    parser.add_argument("--sampler", default="ddim", choices=["ddpm", "ddim", "dpmsolver"])
    parser.add_argument("--sample-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000, help="Windows per sampling call.")
    parser.add_argument("--disc-iterations", type=int, default=2000, help="TimeGAN: 2000.")
    parser.add_argument("--pred-iterations", type=int, default=5000, help="TimeGAN: 5000.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-floor", action="store_true", help="Skip scoring real sines against real sines.")
    parser.add_argument("--out", default=None, help="Write the numbers as JSON here.")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())

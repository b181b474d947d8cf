"""Cost of tracing: DiffusionXAIPipeline vs stock DDPMPipeline / DDIMPipeline on the same UNet, in one run.

    python bench/trace_overhead.py [--threads 2] [--steps 50] [--batch_size 16] [--repeats 5] [--tables]

Prints, per scheduler, the median wall time of each variant and its ratio to the stock pipeline, plus the
trace's bytes. Targets (foundation issue): latents-only <= 1.05x, attention <= 1.5x.

`--tables` instead times the tables' pipeline (wine, the recipe's 256-256 MLP, DDPM with `--steps` steps, as many
rows as the table has) untraced, with the default trace (`trace=True`: at most 100 evenly spaced steps) and with
every step recorded, round-robin, and prints the median per-round ratio to the untraced call.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from _common import bench_parser
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel

from diffusers_xai import DiffusionXAIPipeline, TraceConfig


def digits_unet(seed: int = 0) -> UNet2DModel:
    """The quickstart's architecture: 16x16 grayscale, attention at 8x8 and 4x4 and in the mid block."""
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=16,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    ).eval()


def tables(steps: int, repeats: int) -> None:
    """The tables' pipeline untraced, with the default trace and with every step recorded (see the docstring)."""
    from diffusers_xai.modalities.tabular import (
        TabularDenoiser,
        TabularPreprocessor,
        TabularXAIPipeline,
        load_wine_frame,
    )

    frame = load_wine_frame()
    pre = TabularPreprocessor.fit(frame)
    torch.manual_seed(0)
    denoiser = TabularDenoiser(in_features=pre.num_features, hidden_dims=(256, 256), time_embedding_dim=64).eval()
    pipe = TabularXAIPipeline.from_denoiser(denoiser, pre, "ddpm", num_train_timesteps=1000)
    pipe.set_progress_bar_config(disable=True)
    variants = {"no trace": None, "default trace": True, "every step": TraceConfig(steps="all", max_bytes=2**31)}

    def run(trace) -> float:
        start = time.perf_counter()
        pipe(num_rows=len(frame), generator=torch.Generator().manual_seed(0), num_inference_steps=steps, trace=trace)
        return time.perf_counter() - start

    for trace in variants.values():  # warm-up
        run(trace)
    times = {label: [] for label in variants}
    for _ in range(repeats):
        for label, trace in variants.items():
            times[label].append(run(trace))
    print(f"tables (wine, {len(frame)} rows, MLP 256-256), DDPM {steps} steps, repeats={repeats} (round-robin)")
    for label in variants:
        ratio = statistics.median(a / b for a, b in zip(times[label], times["no trace"]))
        print(f"  {label:<14} {statistics.median(times[label]) * 1000:8.1f} ms  median ratio {ratio:5.3f}x")


def main() -> None:
    parser = bench_parser(__doc__, threads=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tables", action="store_true", help="time the tables' pipeline instead (see above)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.tables:
        tables(args.steps, args.repeats)
        return
    unet = digits_unet()
    variants = {
        "no trace": None,
        "latents-only trace": TraceConfig(steps="all"),
        "attention trace": TraceConfig(steps="all", attention=True, max_bytes=2**31),
    }
    print(
        f"torch threads={args.threads} steps={args.steps} batch={args.batch_size} repeats={args.repeats} "
        "(min over round-robin repeats)"
    )
    for name, stock_cls, sched in (
        ("DDPM", DDPMPipeline, DDPMScheduler(num_train_timesteps=1000)),
        ("DDIM", DDIMPipeline, DDIMScheduler(num_train_timesteps=1000)),
    ):
        stock = stock_cls(unet=unet, scheduler=sched)
        ours = DiffusionXAIPipeline(unet=unet, scheduler=stock.scheduler)
        for p in (stock, ours):
            p.set_progress_bar_config(disable=True)
        kwargs = dict(batch_size=args.batch_size, num_inference_steps=args.steps, output_type="np")
        runs = {"stock": lambda p=stock, kw=kwargs: p(generator=torch.Generator().manual_seed(0), **kw)}
        for label, cfg in variants.items():
            runs[label] = lambda cfg=cfg, p=ours, kw=kwargs: p(
                generator=torch.Generator().manual_seed(0), trace=cfg, **kw
            )
        # round-robin so that load from other processes hits every variant alike; report the minimum
        times = {label: [] for label in runs}
        outputs = {label: fn() for label, fn in runs.items()}  # warm-up
        for _ in range(args.repeats):
            for label, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - start)
        t_stock = min(times["stock"])
        print(f"\n{name}: stock {stock_cls.__name__}: {t_stock * 1000:.1f} ms")
        for label in variants:
            t = min(times[label])
            out = outputs[label]
            identical = np.array_equal(out.images, outputs["stock"].images)
            nbytes = out.trace.nbytes if out.trace is not None else 0
            print(
                f"  {label:<20} {t * 1000:8.1f} ms  ratio {t / t_stock:5.3f}x  (median ratio "
                f"{statistics.median(times[label]) / statistics.median(times['stock']):5.3f}x)  "
                f"trace {nbytes / 2**20:7.2f} MiB  bit-identical={identical}"
            )


if __name__ == "__main__":
    main()

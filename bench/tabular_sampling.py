"""Rows per second of TabularXAIPipeline with few-step samplers vs the 1,000-step DDPM default, same model, same run.

Timing only (the denoiser is untrained: its cost does not depend on its weights). The table is generated in code:
`--rows` rows (default 100,000) of mixed types (floats with decimals, ints, a boolean, a 3-level and a 100-level
categorical, a date, and 5% missing values in two columns), fitted by `TabularPreprocessor` with its defaults
(one-hot / analog bits, missingness indicators). The denoiser is `train/configs/wine.yaml`'s MLP (256-256,
128-wide time embedding). Each sampler generates the rows in batches of `--batch-size`, including the write-back to
the table's schema; samplers run round-robin for `--repeats` rounds and the median is reported.

DDPM-1000 is timed on `--ddpm-rows` rows (default 5,000: 100,000 rows would take about 10 minutes of both cores)
and reported per row; the few-step samplers on all `--rows`.

    python bench/tabular_sampling.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline  # noqa: E402
from diffusers_xai.modalities.tabular.preprocessor import TabularPreprocessor  # noqa: E402
from diffusers_xai.models import TabularDenoiser  # noqa: E402

# name: (scheduler, steps, `set_scheduler` settings); sde_dpm25 is the README's few-step sampler for tables
SAMPLERS = {
    "ddpm1000": ("ddpm", 1000, {}),
    "ddim50": ("ddim", 50, {}),
    "dpm25": ("dpmsolver", 25, {}),
    "sde_dpm25": ("dpmsolver", 25, {"algorithm_type": "sde-dpmsolver++"}),
    "ddim20": ("ddim", 20, {}),
}


def mixed_table(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = np.round(rng.lognormal(10, 0.5, rows), 2)
    income[rng.random(rows) < 0.05] = np.nan
    region = rng.choice(["north", "south", "west"], rows).astype(object)
    region[rng.random(rows) < 0.05] = None
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows),
            "height": np.round(rng.normal(170, 10, rows), 1),
            "income": income,
            "member": rng.random(rows) < 0.3,
            "region": region,
            "product": rng.choice([f"p{i:03d}" for i in range(100)], rows).astype(object),
            "signup": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, rows), "D"),
        }
    )


COLUMNS = ["age", "height", "income", "member", "region", "product", "signup"]


def time_sampler(pipe, sampler: str, rows: int, batch_size: int) -> float:
    scheduler, steps, settings = SAMPLERS[sampler]
    pipe.set_scheduler(scheduler, **settings)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for begin in range(0, rows, batch_size):
        out = pipe(num_rows=min(batch_size, rows - begin), generator=generator, num_inference_steps=steps).rows
    seconds = time.perf_counter() - start
    if list(out.columns) != COLUMNS:
        raise RuntimeError(f"{sampler} returned columns {list(out.columns)}, expected {COLUMNS}")
    return rows / seconds


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    table = mixed_table(args.rows)
    pre = TabularPreprocessor.fit(table)
    torch.manual_seed(0)
    denoiser = TabularDenoiser(in_features=pre.num_features, hidden_dims=(256, 256), time_embedding_dim=128).eval()
    pipe = TabularXAIPipeline.from_denoiser(denoiser, pre)
    pipe.set_progress_bar_config(disable=True)
    speeds = {s: [] for s in args.samplers}
    for _ in range(args.repeats):
        for sampler in args.samplers:
            rows = args.ddpm_rows if sampler == "ddpm1000" else args.rows
            speeds[sampler].append(time_sampler(pipe, sampler, rows, args.batch_size))
    medians = {s: statistics.median(v) for s, v in speeds.items()}
    print(
        f"{args.rows:,} rows ({pre.num_features} model features), batches of {args.batch_size:,}, "
        f"{args.threads} threads, median of {args.repeats}; DDPM-1000 timed on {args.ddpm_rows:,} rows"
    )
    print("| sampler | scheduler | steps | rows/s | vs DDPM-1000 | seconds for 100,000 rows |")
    print("|---|---|---|---|---|---|")
    base = medians.get("ddpm1000")
    for sampler, speed in medians.items():
        ratio = f"{speed / base:.1f}x" if base else "n/a"
        scheduler, steps, settings = SAMPLERS[sampler]
        name = scheduler + "".join(f", {k}={v}" for k, v in settings.items())
        print(f"| {sampler} | {name} | {steps} | {speed:,.0f} | {ratio} | {100_000 / speed:,.1f} |")
    return medians


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--ddpm-rows", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())

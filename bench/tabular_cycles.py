"""Does a trained table model follow the cycles of its date column? The mean of a numeric column by hour of day (or
by month) in the real table against the rows of each given pipeline: the profile's amplitude (max - min), its
correlation with the real profile and the mean absolute difference. A GBM detection test on (date, value) cannot see
a daily cycle in a year of hours (its 255 bins of the date are ~34 hours wide); this can.

    python -c "import shutil, vega_datasets as v; shutil.copy(v.__path__[0] + '/_data/seattle-temps.csv', '.')"
    diffusers-xai train --config train/configs/wine.yaml --dataset_name seattle-temps.csv \\
        --condition_column null --output_dir runs/seattle-temps
    python bench/tabular_cycles.py --data seattle-temps.csv --column temp --pipelines runs/seattle-temps

Prints a markdown table. Timing is not measured.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_parser  # noqa: E402


def parse_args(argv=None):
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--data", required=True, help="The real table (.csv or .parquet).")
    parser.add_argument("--column", required=True, help="The numeric column whose profile is compared.")
    parser.add_argument("--date_column", default="date")
    parser.add_argument("--by", choices=["hour", "month"], default="hour", help="The cycle: hour of day or month.")
    parser.add_argument("--pipelines", nargs="+", required=True, help="Folders written by `diffusers-xai train`.")
    parser.add_argument("--num_rows", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def profile(table: pd.DataFrame, args) -> pd.Series:
    """The column's mean by hour of day (month) of the date."""
    dates = pd.to_datetime(table[args.date_column], format="mixed")
    key = dates.dt.hour if args.by == "hour" else dates.dt.month
    return table.groupby(key.to_numpy())[args.column].mean()


def main(argv=None) -> None:
    from diffusers_xai.modalities.tabular.data import load_table
    from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    real = profile(load_table(args.data), args)
    print(f"mean {args.column} by {args.by}; {args.num_rows} rows per pipeline, seed {args.seed}")
    print("| rows | amplitude | correlation with the real profile | mean absolute difference |")
    print("|---|---|---|---|")
    print(f"| real | {real.max() - real.min():.2f} | 1 | 0 |")
    for folder in args.pipelines:
        pipe = TabularXAIPipeline.from_pretrained(folder)
        pipe.set_progress_bar_config(disable=True)
        rows = pipe(num_rows=args.num_rows, generator=torch.Generator().manual_seed(args.seed)).rows
        ours = profile(rows, args).reindex(real.index)
        corr = float(np.corrcoef(real, ours)[0, 1])
        diff = float((ours - real).abs().mean())
        print(f"| {folder} | {ours.max() - ours.min():.2f} | {corr:.3f} | {diff:.2f} |", flush=True)


if __name__ == "__main__":
    main()

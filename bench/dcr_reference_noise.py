"""How far a small holdout's median distance strays from the training rows' leave-one-out median, split to split.

The DCR ratio divides the synthetic rows' median distance to the closest training row by a real reference's. The
end-of-run evaluation reports it against the `validation_split` holdout alone (`dcr_ratio`) and against the guard's
reference, the holdout pooled with each training row's distance to its closest *other* training row
(`dcr_ratio_pooled`, which the memorisation warning reads). A held-out row's distance to n training rows and a
training row's to the n - 1 others are distributed alike, so over many splits the ratio of the two medians should
sit near 1; how widely it spreads on one split is the noise the pooled reference takes out. Per table: 40 random
80/20 splits (seeds 0-39), the holdout's median over the leave-one-out median, its median over the splits and its
10% and 90% quantiles. Tables: statsmodels' nile (100 years) and ccard (72 rows), and Gaussian tables of 100 and 300
rows (3 columns, seed 0). Distances only: no model is trained (seconds).

    python bench/dcr_reference_noise.py
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch
from _common import bench_parser

from diffusers_xai.evaluation import distance_to_closest_record, infer_metadata
from diffusers_xai.modalities.tabular import load_table

SPLITS = 40
HOLDOUT = 0.2


def tables() -> dict[str, pd.DataFrame]:
    import statsmodels.datasets

    root = os.path.dirname(statsmodels.datasets.__file__)
    gauss = {n: pd.DataFrame(np.random.default_rng(0).normal(size=(n, 3)), columns=list("abc")) for n in (100, 300)}
    return {
        "nile": load_table(os.path.join(root, "nile", "nile.csv")),
        "ccard": load_table(os.path.join(root, "ccard", "ccard.csv")),
        **{f"gaussian-{n}": frame for n, frame in gauss.items()},
    }


def holdout_over_loo(frame: pd.DataFrame, seed: int) -> float:
    """One random split's holdout median distance to the training rows over their leave-one-out median."""
    order = np.random.default_rng(seed).permutation(len(frame))
    k = int(len(frame) * HOLDOUT)
    holdout, train = frame.iloc[order[:k]], frame.iloc[order[k:]]
    metadata = infer_metadata(train)
    held = np.median(distance_to_closest_record(holdout, train, metadata))
    return float(held / np.median(distance_to_closest_record(train, train, metadata, exclude_self=True)))


def main(argv=None) -> None:
    args = bench_parser(__doc__, threads=1).parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| table | rows held out | holdout / leave-one-out median, median over splits | 10% | 90% |")
    print("|---|---|---|---|---|")
    for name, frame in tables().items():
        ratios = np.array([holdout_over_loo(frame, seed) for seed in range(SPLITS)])
        low, mid, high = np.quantile(ratios, [0.1, 0.5, 0.9])
        print(f"| {name} | {int(len(frame) * HOLDOUT)} | {mid:.3f} | {low:.3f} | {high:.3f} |")


if __name__ == "__main__":
    main()

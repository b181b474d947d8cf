"""What Trend's `Name` pairs on vega cars reward: the SDMetrics Column Pair Trends of `Name` with every other column
(the mean over its 8 scored pairs) and Trend itself, against the bench's training rows, for real rows whose names
are given in several ways; no model is trained.

- `holdout`: fresh real cars (the bench's 30% holdout) with their own names: what a generator that does not copy
  could at best produce (73% of their names are not among the training rows', seed 0).
- `holdout, posterior names`: the same rows' numbers with `Name` drawn as ours draws it for generated rows
  (`levels.posterior_levels` on the preprocessor's statistics: a name seen twice or more by its own rows, a once-seen
  name by its make's, no bits): the best ours' decoding can do on numbers that copy no training row.
- `train, posterior names` / `train, name within its make`: the training rows' own numbers (copies) with names
  drawn by the posterior, or uniformly from the training names of the row's make (`codes.leading_word_groups`).
- `train`: the training rows themselves (1.0: copying).

Posterior and within-make draws average `--draws` draws (numpy seed 0). Usage:

    python bench/tabular_names.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tabular_quality import metadata_for, per_pair_trends, split  # noqa: E402

from diffusers_xai.modalities.tabular.codes import leading_word_groups  # noqa: E402
from diffusers_xai.modalities.tabular.data import TabularPreprocessor  # noqa: E402
from diffusers_xai.modalities.tabular.levels import posterior_levels  # noqa: E402


def name_trends(train: pd.DataFrame, rows: pd.DataFrame, metadata: dict) -> tuple[float, float]:
    """(mean Trend over `Name`'s pairs, Trend) of `rows` against `train`."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # it prints every pair
        warnings.simplefilter("ignore")
        pairs = per_pair_trends(train, rows, metadata)
    return float(np.mean([v for k, v in pairs.items() if " | " in k and "Name" in k.split(" | ")])), pairs["__all__"]


def posterior_names(pre: TabularPreprocessor, rows: pd.DataFrame, rng: np.random.Generator) -> list:
    """`Name` drawn for `rows`' numbers as ours' generated rows draw it, without bits (all zero: no evidence)."""
    spec = next(c for c in pre.categorical if c["name"] == "Name")
    normal = pre._quantile_normal(pre._numerical_values(rows))
    book = pre.codebooks["Name"]
    index = posterior_levels(np.zeros((len(rows), book.shape[1])), book, normal, spec["level_stats"], rng)
    return [spec["categories"][i] for i in index]


def within_make(train: pd.DataFrame, rng: np.random.Generator) -> list:
    """Each training row's `Name` replaced by a training name of its make, drawn uniformly over those rows."""
    names = train["Name"].to_numpy()
    make = leading_word_groups(list(names))
    return [rng.choice(names[make == m]) for m in make]


def run(seed: int, draws: int) -> dict:
    train, test = split("cars", seed)
    metadata = metadata_for("cars", train)
    pre = TabularPreprocessor.fit(train, categorical_encoding="auto")
    rng = np.random.default_rng(0)

    def mean_of(make_rows) -> tuple[float, float]:
        scores = [name_trends(train, make_rows(), metadata) for _ in range(draws)]
        return tuple(float(np.mean(s)) for s in zip(*scores))

    return {
        "holdout": name_trends(train, test, metadata),
        "holdout, posterior names": mean_of(lambda: test.assign(Name=posterior_names(pre, test, rng))),
        "train, posterior names": mean_of(lambda: train.assign(Name=posterior_names(pre, train, rng))),
        "train, name within its make": mean_of(lambda: train.assign(Name=within_make(train, rng))),
        "train": name_trends(train, train, metadata),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--draws", type=int, default=5)
    args = parser.parse_args(argv)
    results = {seed: run(seed, args.draws) for seed in args.seeds}
    print("| rows | " + " | ".join(f"`Name` pairs / Trend, seed {s}" for s in args.seeds) + " |")
    print("|---|" + "---|" * len(args.seeds))
    for label in results[args.seeds[0]]:
        cells = [f"{results[s][label][0]:.3f} / {results[s][label][1]:.3f}" for s in args.seeds]
        print(f"| {label} | " + " | ".join(cells) + " |")
    return results


if __name__ == "__main__":
    main()

"""
How far the detection AUC (`diffusers_xai.evaluation.detection_auc`) strays from 0.5 when nothing tells the rows
apart, at the sizes of small tables: two disjoint halves of one real table, drawn `--draws` times, and a column of
names drawn from its own values beside the real column.

    python bench/detection_null.py

Prints, per table and rows per side, the mean, sd (n - 1), min and max over the draws; then the AUC on vega's
la-riots (50 rows) when only its near-unique `last_name` and `address` are compared, drawn from their own values
(0.500 at every seed: scikit-learn's gradient boosting does not split on a level with fewer than 10 rows), and on
its numbers against copies of their own rows (below 0.5: a held-out real row's values sit in the other folds only
among its synthetic copies).
"""

from __future__ import annotations

import argparse
import functools

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_wine
from vega_datasets import data

from diffusers_xai.evaluation import detection_auc, infer_metadata


@functools.cache
def la_riots() -> pd.DataFrame:
    """vega's la-riots, read once from its local file (callers get copies, so none can change another's rows)."""
    return data.la_riots()


def tables() -> dict[str, pd.DataFrame]:
    return {
        "wine": load_wine(as_frame=True).frame,
        "breast_cancer": load_breast_cancer(as_frame=True).frame,
        "la-riots": la_riots().drop(columns="first_name"),  # an identifier: detection leaves it out anyway
    }


def halves(df: pd.DataFrame, n: int, draws: int) -> np.ndarray:
    """Detection AUC of rows 0..n-1 against rows n..2n-1 of `draws` shuffles of `df` (seed s for shuffle s)."""
    metadata = infer_metadata(df)
    out = []
    for s in range(draws):
        shuffled = df.sample(frac=1, random_state=s).reset_index(drop=True)
        out.append(detection_auc(shuffled.iloc[:n], shuffled.iloc[n : 2 * n].reset_index(drop=True), metadata, seed=s))
    return np.asarray(out)


def riots_rows() -> pd.DataFrame:
    """50 rows of vega's la-riots, the size of its training split under the recipe."""
    return la_riots().sample(50, random_state=0).reset_index(drop=True)


def names_alone(draws: int) -> list[float]:
    columns = ["last_name", "address"]
    real = riots_rows()[columns]
    out = []
    for s in range(draws):
        rng = np.random.default_rng(s + 10)
        drawn = pd.DataFrame({c: real[c].to_numpy()[rng.integers(0, len(real), len(real))] for c in columns})
        out.append(round(detection_auc(real, drawn, infer_metadata(real), seed=s), 3))
    return out


def copied_numbers(draws: int) -> list[float]:
    """la-riots' 50 rows of `age`, `longitude`, `latitude` against a bootstrap of themselves (copied rows)."""
    real = riots_rows()[["age", "longitude", "latitude"]]
    metadata = infer_metadata(real)
    copies = [real.sample(len(real), replace=True, random_state=s).reset_index(drop=True) for s in range(draws)]
    return [round(detection_auc(real, c, metadata, seed=s), 3) for s, c in enumerate(copies)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[30, 50], help="Rows per side.")
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    print("| table | rows per side | mean | sd | min | max |\n|---|---|---|---|---|---|")
    for name, df in tables().items():
        for n in args.rows:
            if 2 * n > len(df):
                continue
            auc = halves(df, n, args.draws)
            print(f"| {name} | {n} | {auc.mean():.3f} | {auc.std(ddof=1):.3f} | {auc.min():.3f} | {auc.max():.3f} |")
    print("la-riots, last_name and address alone, drawn from their own values:", names_alone(5))
    print("la-riots, age / longitude / latitude against a bootstrap of their own rows:", copied_numbers(5))


if __name__ == "__main__":
    main()

"""
Orders between columns (`diffusers_xai.modalities.tabular.orders`), or with `--rule nesting` nested levels
(`nesting.py`), on and off, on the same trained model and the same sampled x0: ours is trained as
`bench/tabular_quality.py` trains it, its rows are sampled with DDPM-1000 and decoded twice, once as fitted and once
with the rule removed from the preprocessor, and both are scored as the benchmark scores them (Trend, detection AUC,
TSTR, DCR ratio), with the rows that break a rule of the training rows.

    python bench/tabular_orders.py --tables breast_cancer iris --seeds 0 1 2 --threads 1 --out orders.json
    python bench/tabular_orders.py --tables cars --rule nesting --seeds 0 1 2 --threads 1

or, for a table trained through the recipe with `--derived_columns false`, its saved pipeline decoded with and
without the orders its file holds, scored against the whole file:

    python bench/tabular_orders.py --saved runs/ohlc=<vega_datasets>/_data/ohlc.json --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tabular_quality as tq  # noqa: E402 (the benchmark's own split, training, sampling and scores)

from diffusers_xai.evaluation.tabular import evaluate_table  # noqa: E402
from diffusers_xai.modalities.tabular import TabularPreprocessor, TabularXAIPipeline, load_table  # noqa: E402
from diffusers_xai.modalities.tabular.orders import reduced_orders  # noqa: E402
from diffusers_xai.utils.io import atomic_write  # noqa: E402

METRICS = ("column_pair_trends", "detection_auc", "tstr", "dcr_ratio")


def broken_rows(rows: pd.DataFrame, orders: list[tuple[str, str]]) -> int:
    """Rows where some `low` column is above its `high` column (both present)."""
    broken = np.zeros(len(rows), dtype=bool)
    for low, high in orders:
        a, b = rows[low], rows[high]
        if pd.api.types.is_object_dtype(a):
            a, b = pd.to_datetime(a), pd.to_datetime(b)
        broken |= (a > b).to_numpy()
    return int(broken.sum())


def unnested_rows(rows: pd.DataFrame, columns: list[dict]) -> int:
    """Rows where a nested column's level goes with another level of its coarse column than the row's."""
    broken = np.zeros(len(rows), dtype=bool)
    for spec in columns:
        for rule in spec.get("within", []):
            coarse = rows[spec["name"]].map(dict(map(tuple, rule["mapping"])))
            broken |= (coarse != rows[rule["column"]]).to_numpy()
    return int(broken.sum())


# --rule: the spec key that holds it, and the rows that break it
RULES = {
    "orders": ("at_least", lambda rows, columns: broken_rows(rows, reduced_orders(columns))),
    "nesting": ("within", unnested_rows),
}


def run(name: str, seed: int, args) -> list[dict]:
    train_df, test_df = tq.split(name, seed)
    targets, metadata = tq.TABLES[name][1], tq.metadata_for(name, train_df)
    bench_args = tq.parse_args(["--tables", name, "--seed", str(seed), "--threads", str(args.threads)])
    key, count_broken = RULES[args.rule]
    with tempfile.TemporaryDirectory() as workdir:
        pipe, _ = tq.fit_ours_from_args(name, train_df, workdir, bench_args)
        columns = [dict(spec) for spec in pipe.preprocessor.columns]  # as fitted: what the rows are checked against
        out = []
        for label in (f"{args.rule} on", f"{args.rule} off"):
            if label.endswith("off"):
                for spec in pipe.preprocessor.columns:
                    spec.pop(key, None)
            rows = tq.sample_ours(pipe, "ddpm1000", len(train_df), seed)
            scores = tq.score(train_df, test_df, rows, targets, metadata, seed, name)
            out.append(
                {
                    "table": name,
                    "seed": seed,
                    "decode": label,
                    "rules": sum(len(spec.get(key, [])) for spec in columns),
                    "broken_rows": count_broken(rows, columns),
                    **{k: scores[k] for k in METRICS},
                    **tq.stop_info(pipe),
                }
            )
    return out


def markdown(frame: pd.DataFrame, digits: int) -> str:
    """A markdown table of `frame` (pandas' `to_markdown` needs `tabulate`, which is not a dependency)."""
    cells = frame.map(lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v))
    lines = [list(frame.columns), ["---"] * frame.shape[1], *cells.to_numpy().tolist()]
    return "\n".join("| " + " | ".join(map(str, line)) + " |" for line in lines)


def run_saved(pair: str, seeds: list[int]) -> list[dict]:
    """`RUN=FILE`: a pipeline trained with `--derived_columns false` (so without orders) and its data file. Its rows
    are decoded as trained and with the orders a preprocessor fitted on the file finds, and both are scored against
    the whole file (Quality, Trend, detection)."""
    run, path = pair.split("=", 1)
    real = load_table(path)
    found = {c["name"]: c["at_least"] for c in TabularPreprocessor.fit(real).columns if c.get("at_least")}
    pipe = TabularXAIPipeline.from_pretrained(run)
    pipe.set_progress_bar_config(disable=True)
    out = []
    for label in ("orders off", "orders on"):
        for spec in pipe.preprocessor.columns:
            if label == "orders on" and spec["name"] in found:
                spec["at_least"] = found[spec["name"]]
        for seed in seeds:
            rows = pipe(num_rows=1000, generator=torch.Generator().manual_seed(seed)).rows
            report = evaluate_table(real, rows, sdmetrics_privacy=False, seed=0)
            orders = [(low, high) for high, lows in found.items() for low in lows]
            out.append(
                {
                    "table": os.path.basename(os.path.normpath(run)),
                    "seed": seed,
                    "decode": label,
                    "orders": len(reduced_orders(pipe.preprocessor.columns)),
                    "broken_rows": broken_rows(rows, orders),
                    **{k: float(report[k].value) for k in ("quality_score", "column_pair_trends", "detection_auc")},
                }
            )
    return out


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=["breast_cancer", "iris"], choices=list(tq.TABLES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--rule",
        choices=list(RULES),
        default="orders",
        help="What the second decoding leaves out: the orders, or the nested levels (`nesting.mark_nesting`).",
    )
    parser.add_argument("--out", default=None, help="Write the rows as JSON here (after every table and seed).")
    parser.add_argument(
        "--saved",
        nargs="+",
        default=None,
        help="RUN=FILE pairs of pipelines trained with --derived_columns false, instead of the benchmark's tables.",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.saved:
        frame = pd.DataFrame([row for pair in args.saved for row in run_saved(pair, args.seeds)])
        print(markdown(frame, 4))
        return frame
    rows = []
    for name in args.tables:
        for seed in args.seeds:
            rows += run(name, seed, args)
            if args.out:
                atomic_write(args.out, json.dumps(rows, indent=1))
    frame = pd.DataFrame(rows)
    print(markdown(frame, 3))
    means = frame.groupby(["table", "decode"], as_index=False)[list(METRICS)].mean()
    print("\nmean over seeds\n" + markdown(means, 4))
    return frame


if __name__ == "__main__":
    main()

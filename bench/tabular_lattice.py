"""Numbers on a sparse lattice of repeated values (`schema.learn_lattice`): the detection AUC of a trained tabular
model's rows written on the observed values, against the same rows rounded to the column's decimals only, SDV's
GaussianCopula and TVAE fitted on the same training rows, and real held-out rows (the reference).

The rows are scored as the end-of-run evaluation scores them: against the run's training rows (its own
`validation_split` holdout left out), on the value columns and on the whole table (a `--date_column` left in).
Train first, e.g. on vega's seattle-weather (whole-°F temperatures stored in °C to one decimal):

    python -c "import shutil, vega_datasets as v; shutil.copy(v.__path__[0] + '/_data/seattle-weather.csv', '.')"
    diffusers-xai train --config train/configs/wine.yaml --dataset_name seattle-weather.csv \\
        --condition_column weather --output_dir runs/seattle
    python bench/tabular_lattice.py --pipeline runs/seattle --date_column date

Prints a markdown table. One draw of 1,000 rows moves the detection AUC by about ±0.015, so `--draws N` also samples
ours N times (seeds `--seed`, `--seed` + 1, ...) and prints each draw's two AUCs and the share of its rows on each
point-mass bound (`tabular/atoms.py`; seattle-weather's dry days), then their mean ± sd; `--no_peers` skips SDV's
fits. Timing is not measured.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_parser  # noqa: E402
from tabular_quality import fit_sdv  # noqa: E402


def parse_args(argv=None):
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--pipeline", required=True, help="A folder written by `diffusers-xai train` (a table).")
    parser.add_argument(
        "--date_column", default=None, help="Scored on the whole table only (the value columns leave it out)."
    )
    parser.add_argument("--num_rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1, help="Sampling seed (the evaluation's: the run's seed + 1).")
    parser.add_argument("--fit_seed", type=int, default=0, help="Seed of SDV's fits (the run's seed).")
    parser.add_argument("--tvae_updates", type=int, default=4000)
    parser.add_argument("--draws", type=int, default=1, help="Samples of ours, from seeds seed, seed + 1, ...")
    parser.add_argument("--no_peers", action="store_true", help="Leave out GaussianCopula and TVAE.")
    args = parser.parse_args(argv)
    if args.draws < 1:
        parser.error(f"--draws must be at least 1, got {args.draws}.")
    return args


def generators(pipe, train_rows: pd.DataFrame, metadata: dict, args) -> dict[str, pd.DataFrame]:
    """Rows of every generator compared: ours on the lattice, ours rounded only, GaussianCopula, TVAE."""

    def ours() -> pd.DataFrame:
        return pipe(num_rows=args.num_rows, generator=torch.Generator().manual_seed(args.seed)).rows

    rows = {"ours, written on the lattice": ours()}
    lattices = {spec["name"]: spec["lattice"] for spec in pipe.preprocessor.numerical}
    for spec in pipe.preprocessor.numerical:
        spec["lattice"] = None
    rows["the same model, rounded to the decimals only"] = ours()
    for spec in pipe.preprocessor.numerical:
        spec["lattice"] = lattices[spec["name"]]
    if args.no_peers:
        return rows
    rows["GaussianCopula"] = fit_sdv("GaussianCopula", train_rows, metadata, args.fit_seed, 0)[0](args.num_rows)
    rows[f"TVAE ({args.tvae_updates:,} updates)"] = fit_sdv(
        "TVAE", train_rows, metadata, args.fit_seed, args.tvae_updates
    )[0](args.num_rows)
    return rows


def bounds_held(train_rows: pd.DataFrame) -> list[tuple[str, float]]:
    """`(column, value)` of each numerical column's training minimum or maximum that holds 1% of the rows or more:
    where a point mass sits. Read from the rows, not from the model, so that a model trained before point masses
    existed is read alike."""
    held = []
    for name in train_rows.select_dtypes("number").columns:
        values = train_rows[name].dropna()
        held += [(name, float(v)) for v in (values.min(), values.max()) if (values == v).mean() >= 0.01]
    return held


def print_draws(pipe, train_rows: pd.DataFrame, score, args) -> None:
    """Ours sampled `args.draws` times: each draw's two AUCs and share of rows on each held bound, then mean ± sd."""
    held = bounds_held(train_rows)
    header = ["seed", "value columns", "whole table", *(f"`{c}` = {v:g}" for c, v in held)]
    real = ", ".join(f"{(train_rows[c] == v).mean():.3f}" for c, v in held)
    print(f"\n{args.draws} draws of ours (the training rows on the bounds: {real})")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    numbers = []
    for seed in range(args.seed, args.seed + args.draws):
        table = pipe(num_rows=args.num_rows, generator=torch.Generator().manual_seed(seed)).rows
        numbers.append([*score(table), *((table[c] == v).mean() for c, v in held)])
        print(f"| {seed} | " + " | ".join(f"{x:.3f}" for x in numbers[-1]) + " |", flush=True)
    stats = torch.tensor(numbers, dtype=torch.float64)
    mean, sd = stats.mean(0), stats.std(0)  # sd with n - 1
    print("| mean ± sd | " + " | ".join(f"{m:.3f} ± {d:.3f}" for m, d in zip(mean, sd)) + " |")


def main(argv=None) -> None:
    from diffusers_xai.evaluation import detection_auc, infer_metadata
    from diffusers_xai.modalities import get_modality
    from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline
    from diffusers_xai.training import TrainingConfig

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    config = TrainingConfig.from_yaml(Path(args.pipeline) / "training_config.yaml")
    train_rows, holdout = get_modality("tabular")._train_and_holdout(config, 10_000)
    metadata = infer_metadata(train_rows)
    values = [c for c in train_rows.columns if c != args.date_column]
    value_metadata = {"columns": {c: metadata["columns"][c] for c in values}}

    def score(table: pd.DataFrame) -> tuple[float, float]:
        only = detection_auc(train_rows[values], table[values], value_metadata)
        return only, detection_auc(train_rows, table[train_rows.columns], metadata)

    pipe = TabularXAIPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    rows = generators(pipe, train_rows, metadata, args)
    if holdout is not None:
        rows["real holdout rows (the reference)"] = holdout
    lattice = [spec["name"] for spec in pipe.preprocessor.numerical if spec.get("lattice")]
    print(f"lattice columns: {lattice}; {len(train_rows)} training rows; seed {args.seed}")
    print("| rows | value columns | whole table | on the lattice |")
    print("|---|---|---|---|")
    for name, table in rows.items():
        on = " / ".join(f"{table[c].isin(train_rows[c]).mean():.3f}" for c in lattice)
        only, whole = score(table)
        print(f"| {name} | {only:.3f} | {whole:.3f} | {on} |", flush=True)
    if args.draws > 1:
        print_draws(pipe, train_rows, score, args)


if __name__ == "__main__":
    main()

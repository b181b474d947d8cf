"""The DCR ratio of rows that copy no row, per table: what the privacy guard checks before training.

Rows whose every column is drawn on its own from the training rows' values (`tabular_privacy.independent_columns`)
copy no row, so their DCR ratio says what the ratio reads on a table without any memorisation. Where it is below 0.9,
the guard (`early_stopping_dcr_ratio`) refuses the table before training and the evaluation's warning says the ratio
cannot tell copying there.

For each of the benchmark's tables and seeds: the benchmark's 70% training split (`bench/tabular_quality.py`'s
`split`), then the guard's own 20% holdout of it (`TabularModality.holdout_split`, unconditional as the benchmark
trains), and the ratio against the guard's reference (the holdout's distances to the training rows pooled with the
training rows' leave-one-out distances), seeded as the guard seeds it. Then vega's barley (each variety x site x year
once), whole, through the same guard split; `--packaged` adds more small tables that ship in packages (vega's local
files, statsmodels' datasets), each whole. Distances only: no model is trained (seconds per table).

    python bench/dcr_baseline.py [--packaged]
"""

from __future__ import annotations

import datasets
import pandas as pd
import torch
from _common import bench_parser
from tabular_quality import TABLES, split

from diffusers_xai.evaluation.tabular_privacy import independent_columns_ratio, reference_distances
from diffusers_xai.evaluation.tabular_schema import infer_metadata
from diffusers_xai.modalities.tabular.modality import TabularModality
from diffusers_xai.training import TrainingConfig


def guard_baseline(frame: pd.DataFrame, seed: int) -> float:
    """The ratio `check_guard_can_judge` compares with the guard's threshold, on the guard's split of `frame`."""
    config = TrainingConfig.from_dict(
        {"modality": "tabular", "dataset_name": "wine", "validation_split": 0.2, "seed": seed}
    )
    train, holdout = TabularModality().holdout_split(datasets.Dataset.from_pandas(frame, preserve_index=False), config)
    train, holdout = train.to_pandas(), holdout.to_pandas()
    metadata = infer_metadata(train)
    return independent_columns_ratio(train, reference_distances(train, holdout, metadata), metadata, seed)


# small tables of few columns, where rows of exact values would sit on a training row's value in all but one column
VEGA_FILES = ("anscombe.json", "la-riots.csv", "crimea.json", "driving.json", "wheat.json", "burtin.json",
              "iowa-electricity.csv", "ohlc.json", "stocks.csv", "seattle-weather.csv")  # fmt: skip
STATSMODELS = ("ccard", "heart", "spector", "strikes", "engel", "stackloss", "longley", "committee", "cpunish",
               "scotland", "copper", "statecrime")  # fmt: skip


def packaged_tables() -> dict[str, pd.DataFrame]:
    import os

    import statsmodels.datasets
    import vega_datasets

    folder = os.path.join(os.path.dirname(vega_datasets.__file__), "_data")
    tables = {name: getattr(statsmodels.datasets, name).load_pandas().data for name in STATSMODELS}
    for name in VEGA_FILES:
        path = os.path.join(folder, name)
        tables[name] = pd.read_json(path) if name.endswith(".json") else pd.read_csv(path)
    return tables


def main(argv=None) -> None:
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--packaged", action="store_true", help="also vega's and statsmodels' small tables, whole")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from vega_datasets import local_data

    print("| table | " + " | ".join(f"seed {s}" for s in args.seeds) + " |")
    print("|---|" + "---|" * len(args.seeds))
    for name in args.tables:
        ratios = [guard_baseline(split(name, seed)[0], seed) for seed in args.seeds]
        print(f"| {name} | " + " | ".join(f"{r:.3f}" for r in ratios) + " |", flush=True)
    wholes = {"barley": local_data.barley(), **(packaged_tables() if args.packaged else {})}
    for name, frame in wholes.items():
        print(f"| {name} (whole) | " + " | ".join(f"{guard_baseline(frame, s):.3f}" for s in args.seeds) + " |")


if __name__ == "__main__":
    main()

"""What drawing a table's near-unique columns from their training frequencies, outside the model, would give: a
pipeline trained without those columns samples the other ones, each given column is drawn independently from the
training rows' values, and the rows are scored as `bench/tabular_table.py` scores them, against the training rows
and holdout of a run trained on the whole table (which must hold the same rows in the same order). Not a feature of
the package: the measurement behind the benchmark log's *Packaged tables through the recipe*. E.g. on la-riots:

    python -c "import pandas as pd, vega_datasets as v; t = pd.read_csv(v.__path__[0] + '/_data/la-riots.csv'); \\
        t.to_csv('la-riots.csv', index=False); \\
        t.drop(columns=['last_name', 'address', 'neighborhood']).to_csv('riots-small.csv', index=False)"
    diffusers-xai train --config train/configs/wine.yaml --dataset_name la-riots.csv --condition_column null \\
        --output_dir runs/riots
    diffusers-xai train --config train/configs/wine.yaml --dataset_name riots-small.csv --condition_column null \\
        --eval_samples null --output_dir runs/riots-small
    python bench/tabular_marginal.py --whole runs/riots --pipeline runs/riots-small \\
        --columns last_name address neighborhood

Prints one markdown row. Timing is not measured.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_parser  # noqa: E402
from tabular_table import METRICS, shared_split  # noqa: E402


def parse_args(argv=None):
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--whole", required=True, help="A run trained on the whole table: its rows and holdout.")
    parser.add_argument("--pipeline", required=True, help="A run trained on the table without `--columns`.")
    parser.add_argument("--columns", nargs="+", required=True, help="Columns drawn from their training values.")
    parser.add_argument("--num_rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    from diffusers_xai.evaluation import evaluate_table
    from diffusers_xai.evaluation.tabular import infer_metadata
    from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline
    from diffusers_xai.training import TrainingConfig

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    train_rows, holdout = shared_split([TrainingConfig.from_yaml(Path(args.whole) / "training_config.yaml")])
    pipe = TabularXAIPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    rows = pipe(num_rows=args.num_rows, generator=torch.Generator().manual_seed(args.seed)).rows
    rng = np.random.default_rng(args.seed)
    for column in args.columns:
        rows[column] = rng.choice(train_rows[column].to_numpy(), size=len(rows))
    report = evaluate_table(
        train_rows, rows[train_rows.columns], real_test=holdout, metadata=infer_metadata(train_rows),
        sdmetrics_privacy=False,
    )  # fmt: skip
    print(f"| rows | {' | '.join(METRICS)} |\n|---|{'---|' * len(METRICS)}")
    values = " | ".join(f"{report[key].value:.3f}" for key in METRICS.values())
    print(f"| ours without {', '.join(args.columns)}, those drawn from their training values | {values} |")


if __name__ == "__main__":
    main()

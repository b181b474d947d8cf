"""A user's table through the recipe: trained tabular pipelines against SDV's GaussianCopula and TVAE fitted on the
same training rows, scored as the end-of-run evaluation scores them (SDMetrics Quality / Shape / Trend, the GBM
detection AUC, the DCR ratio against the run's own `validation_split` holdout). Every pipeline given must have been
trained on the same table with the same holdout (they differ in settings or code). E.g. vega's 63-row la-riots
(last names and addresses of 48 levels in 50 training rows), with every column modelled, then as the recipe trains
it (`marginal_columns: auto` draws `last_name`, `address` and `neighborhood` outside the model):

    python -c "import shutil, vega_datasets as v; shutil.copy(v.__path__[0] + '/_data/la-riots.csv', '.')"
    diffusers-xai train --config train/configs/wine.yaml --dataset_name la-riots.csv --condition_column null \\
        --marginal_columns "[]" --output_dir runs/riots-all
    diffusers-xai train --config train/configs/wine.yaml --dataset_name la-riots.csv --condition_column null \\
        --output_dir runs/riots
    python bench/tabular_table.py --pipelines runs/riots-all runs/riots

Prints a markdown table. Timing is not measured.
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

# the run's holdout decides these: pipelines trained with other values were not trained on the same rows
SPLIT_KEYS = ("dataset_name", "validation_split", "seed", "condition_column")
METRICS = {
    "quality": "SDMetrics Quality Score",
    "shape": "SDMetrics Column Shapes",
    "trend": "SDMetrics Column Pair Trends",
    "detection": "Detection AUC (HistGradientBoosting, 5-fold)",
    "dcr_ratio": "dcr_ratio",
}


def parse_args(argv=None):
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--pipelines", nargs="+", required=True, help="Folders written by `diffusers-xai train`.")
    parser.add_argument("--num_rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1, help="Sampling seed (the evaluation's: the run's seed + 1).")
    parser.add_argument("--fit_seed", type=int, default=0, help="Seed of SDV's fits.")
    parser.add_argument("--tvae_updates", type=int, default=4000)
    return parser.parse_args(argv)


def shared_split(configs: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training rows and holdout of the runs, which must share them."""
    from diffusers_xai.modalities import get_modality

    settings = {tuple(getattr(c, k, None) for k in SPLIT_KEYS) for c in configs}
    if len(settings) > 1:
        raise ValueError(f"The pipelines were trained on different rows ({SPLIT_KEYS}: {sorted(settings)}).")
    train_rows, holdout = get_modality("tabular")._train_and_holdout(configs[0], 10_000)
    if holdout is None:
        raise ValueError("The runs have no holdout (`validation_split: 0`): the DCR ratio needs one.")
    return train_rows, holdout


def main(argv=None) -> None:
    from diffusers_xai.evaluation import evaluate_table, infer_metadata
    from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline
    from diffusers_xai.training import TrainingConfig

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    configs = [TrainingConfig.from_yaml(Path(p) / "training_config.yaml") for p in args.pipelines]
    train_rows, holdout = shared_split(configs)
    metadata = infer_metadata(train_rows)
    rows = {}
    for path in args.pipelines:
        pipe = TabularXAIPipeline.from_pretrained(path)
        pipe.set_progress_bar_config(disable=True)
        rows[f"ours: {path}"] = pipe(num_rows=args.num_rows, generator=torch.Generator().manual_seed(args.seed)).rows
    rows["GaussianCopula"] = fit_sdv("GaussianCopula", train_rows, metadata, args.fit_seed, 0)[0](args.num_rows)
    tvae = fit_sdv("TVAE", train_rows, metadata, args.fit_seed, args.tvae_updates)[0]
    rows[f"TVAE ({args.tvae_updates:,} updates)"] = tvae(args.num_rows)
    print(f"{configs[0].dataset_name}: {len(train_rows)} training rows, {len(holdout)} held out; seed {args.seed}")
    print(f"| rows | {' | '.join(METRICS)} |")
    print(f"|---|{'---|' * len(METRICS)}")
    for name, table in rows.items():
        report = evaluate_table(
            train_rows, table[train_rows.columns], real_test=holdout, metadata=metadata, sdmetrics_privacy=False
        )
        values = " | ".join(f"{report[key].value:.3f}" for key in METRICS.values())
        print(f"| {name} | {values} |", flush=True)


if __name__ == "__main__":
    main()

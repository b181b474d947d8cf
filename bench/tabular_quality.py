"""Synthetic-table quality: our TabularXAIPipeline vs SDV's GaussianCopula and CTGAN on the same split, same run.

For each dataset (sklearn wine; breast cancer with its string `diagnosis` column) the rows are split once
(stratified 70/30, seeded). Every generator is fitted on the same 70% and generates as many rows; all are scored by
`diffusers_xai.evaluation.evaluate_table` against the same held-out 30%:

- SDMetrics QualityReport (overall, Column Shapes, Column Pair Trends),
- TSTR vs TRTR (HistGradientBoosting, macro F1 on the class column, fitted on synthetic / real train, scored on the
  real test rows),
- median distance to closest record (SDMetrics DCR, synthetic→train) beside the real holdout→train baseline,
- detection AUC (0.5 = indistinguishable), and wall-clock training time on `--threads` CPU threads.

Ours trains through the shared trainer (`train/configs/wine.yaml`, the same hyper-parameters for both datasets), on
the train split written to a CSV, conditioned on the class column (`--variant cond`), or unconditional with the class
column generated as a categorical (`--variant onehot` / `analog_bits`: the categorical-encoding measurement).
SDV is a bench-only dependency: `pip install -c constraints.txt sdv`.

    python bench/tabular_quality.py [--datasets wine breast_cancer] [--variants cond] [--steps 4000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from diffusers_xai.evaluation.tabular import evaluate_table, infer_metadata  # noqa: E402
from diffusers_xai.modalities.tabular.data import TABULAR_DATASETS  # noqa: E402
from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline  # noqa: E402
from diffusers_xai.training import TrainingConfig, train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = {"wine": "cultivar", "breast_cancer": "diagnosis"}
METRICS = [
    ("quality_score", "Quality"),
    ("column_shapes", "Shapes"),
    ("column_pair_trends", "Pairs"),
    ("tstr", "TSTR F1"),
    ("trtr", "TRTR F1"),
    ("dcr_median", "DCR med"),
    ("detection_auc", "Detect AUC"),
]


def split(name: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    frame = TABULAR_DATASETS[name]()
    train_df, test_df = train_test_split(frame, test_size=0.3, random_state=seed, stratify=frame[TARGETS[name]])
    return train_df.reset_index(drop=True), test_df.reset_index(drop=True)


def fit_ours(train_df: pd.DataFrame, target: str, variant: str, steps: int, seed: int, workdir: str):
    csv = os.path.join(workdir, "train.csv")
    train_df.to_csv(csv, index=False)
    options = (
        {"condition_column": target}
        if variant == "cond"
        else {
            "condition_column": None,
            "categorical_columns": [target],
            "categorical_encoding": variant,
        }
    )
    config = TrainingConfig.from_yaml(
        os.path.join(REPO, "train", "configs", "wine.yaml"),
        {
            "dataset_name": csv,
            "output_dir": os.path.join(workdir, f"ours-{variant}"),
            "max_train_steps": steps,
            "validation_steps": None,
            "checkpointing_steps": None,
            "seed": seed,
            **options,
        },
    )
    start = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - start
    pipe = TabularXAIPipeline.from_pretrained(config.output_dir)
    pipe.set_progress_bar_config(disable=True)

    def sample(n: int) -> pd.DataFrame:
        # TabDDPM samples with the full DDPM chain; the class column follows the training frequencies
        return pipe(num_rows=n, generator=torch.Generator().manual_seed(seed), num_inference_steps=1000).rows

    return sample, seconds


def fit_sdv(kind: str, train_df: pd.DataFrame, seed: int, ctgan_epochs: int):
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer

    metadata = Metadata.load_from_dict(infer_metadata(train_df), single_table_name="table")
    torch.manual_seed(seed)
    np.random.seed(seed)
    if kind == "GaussianCopula":
        synth = GaussianCopulaSynthesizer(metadata)
    else:
        synth = CTGANSynthesizer(metadata, epochs=ctgan_epochs, enable_gpu=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synth.fit({"table": train_df})  # SDV 2 takes {table_name: DataFrame}
    seconds = time.perf_counter() - start

    def sample(n: int) -> pd.DataFrame:
        if hasattr(synth, "set_random_state"):
            synth.set_random_state(seed)
        sampled = synth.sample(num_rows=n)
        sampled = sampled["table"] if isinstance(sampled, dict) else sampled
        return sampled[list(train_df.columns)].astype(train_df.dtypes.to_dict())

    return sample, seconds


def score(train_df, test_df, synthetic, target, seed) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = evaluate_table(train_df, synthetic, target=target, real_test=test_df, seed=seed)
    out = {key: float(report[key].value) for key, _ in METRICS}
    out["dcr_median_holdout"] = float(report["dcr_median_holdout"].value)
    return out


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    results = {}
    for dataset in args.datasets:
        train_df, test_df = split(dataset, args.seed)
        target = TARGETS[dataset]
        n = len(train_df)
        rows = {}
        with tempfile.TemporaryDirectory() as workdir:
            fitted = {
                f"ours ({v})": fit_ours(train_df, target, v, args.steps, args.seed, workdir) for v in args.variants
            }
            if not args.skip_sdv:
                fitted["SDV GaussianCopula"] = fit_sdv("GaussianCopula", train_df, args.seed, args.ctgan_epochs)
                fitted["SDV CTGAN"] = fit_sdv("CTGAN", train_df, args.seed, args.ctgan_epochs)
            for name, (sample, seconds) in fitted.items():
                synthetic = sample(n)
                if list(synthetic.columns) != list(train_df.columns):
                    raise RuntimeError(f"{name} returned columns {list(synthetic.columns)}")
                rows[name] = {**score(train_df, test_df, synthetic, target, args.seed), "train_s": seconds}
        results[dataset] = rows
        print(
            f"\n== {dataset}: {n} train rows, {len(test_df)} test rows, target {target!r}, {args.threads} threads =="
        )
        header = f"{'generator':<22}" + "".join(f"{label:>11}" for _, label in METRICS) + f"{'train s':>10}"
        print(header)
        for name, r in rows.items():
            print(f"{name:<22}" + "".join(f"{r[k]:>11.3f}" for k, _ in METRICS) + f"{r['train_s']:>10.1f}")
        print(f"{'(real holdout DCR)':<22}{'':>55}{next(iter(rows.values()))['dcr_median_holdout']:>11.3f}")
        sdv = [k for k in rows if k.startswith("SDV")]
        if sdv:
            for ours in [k for k in rows if k.startswith("ours")]:
                best_q = max(rows[k]["quality_score"] for k in sdv)
                best_t = max(rows[k]["tstr"] for k in sdv)
                print(
                    f"{ours}: quality / best SDV = {rows[ours]['quality_score'] / best_q:.3f}, "
                    f"TSTR / best SDV = {rows[ours]['tstr'] / best_t:.3f}"
                )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["wine", "breast_cancer"], choices=sorted(TARGETS))
    parser.add_argument("--variants", nargs="+", default=["cond"], choices=["cond", "onehot", "analog_bits"])
    parser.add_argument("--steps", type=int, default=4000, help="Training steps of our model (wine.yaml: 4000).")
    parser.add_argument("--ctgan-epochs", type=int, default=300, help="CTGAN epochs (SDV's default: 300).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sdv", action="store_true", help="Only our variants (e.g. the encoding comparison).")
    parser.add_argument("--out", default=None, help="Write the numbers as JSON here.")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())

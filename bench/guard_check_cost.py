"""Seconds per DCR-guard check (`early_stopping_dcr_ratio`) with the reference distances computed once per run vs
at every check, on the same table and model, round-robin.

A check samples as many rows as the holdout with all 1,000 DDPM steps, then bootstraps the lower bound of their DCR
ratio against a reference: the holdout's distances to the training rows plus the training rows' leave-one-out
distances. The reference never changes between a run's checks, so the trainer's modality computes it once
(`TabularModality._guard_rows`); "every check" is the code before that change, a fresh modality per check.

Timing only (the denoiser is untrained: its cost does not depend on its weights). The table: sklearn's breast-cancer
rows resampled to `--rows` rows (default 10,000) with 5% multiplicative noise on the numbers, written to a CSV and
trained as `train/configs/wine.yaml` trains (80/20 holdout, `hidden_dims: auto`, no condition column).

    python bench/guard_check_cost.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from diffusers_xai.modalities.tabular.data import load_breast_cancer_frame  # noqa: E402
from diffusers_xai.modalities.tabular.modality import TabularModality  # noqa: E402
from diffusers_xai.training import TrainingConfig  # noqa: E402
from diffusers_xai.training.data import prepare_data  # noqa: E402
from diffusers_xai.training.finetune import build_noise_scheduler  # noqa: E402


def noisy_table(rows: int, seed: int = 0):
    frame = load_breast_cancer_frame().sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    numbers = frame.select_dtypes("number").columns
    noise = 1 + 0.05 * np.random.default_rng(seed).standard_normal((rows, len(numbers)))
    frame[numbers] = frame[numbers] * noise
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "table.csv")
        noisy_table(args.rows).to_csv(path, index=False)
        config = TrainingConfig.from_yaml(
            "train/configs/wine.yaml",
            {"dataset_name": path, "condition_column": None, "output_dir": os.path.join(tmp, "run")},
        )
        cached = TabularModality()
        _, _, preprocessor = prepare_data(cached, config)  # the run's first look: computes the reference once
        model = cached.build_model(config, preprocessor).eval()
        pipeline = cached.build_pipeline(model, build_noise_scheduler(config), preprocessor)
        times: dict[str, list[float]] = {"once per run": [], "every check": []}
        bounds = {}
        for _ in range(args.repeats):
            for name in times:
                modality = cached if name == "once per run" else TabularModality()
                start = time.perf_counter()
                bounds[name] = modality.early_stopping_check(pipeline, config)[1]
                times[name].append(time.perf_counter() - start)
    assert bounds["once per run"] == bounds["every check"], bounds  # the same rows, reference and bound
    train_rows, holdout, _ = cached._guard_rows(config)
    print(f"{len(train_rows)} training rows, {len(holdout)} held out; {args.threads} thread(s), {args.repeats} rounds")
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, seconds in median.items():
        rounds = ", ".join(f"{t:.1f}" for t in times[name])
        print(f"  reference {name:>13}: {seconds:6.1f} s per check (rounds: {rounds})")
    print(f"  ratio once per run / every check: {median['once per run'] / median['every check']:.2f}")


if __name__ == "__main__":
    main()

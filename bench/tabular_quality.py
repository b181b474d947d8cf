"""Synthetic-table quality, like with like: our TabularXAIPipeline vs SDV's GaussianCopula, CTGAN and TVAE, all
unconditional, on the same split of six tables that ship in packages, scored with the metrics of the TabSyn/TabDiff
line of work, same run.

Tables (train 70% / holdout 30%, stratified on the first target when it is a class, seeded): sklearn's wine,
breast_cancer and iris; palmerpenguins (NaNs); vega_datasets' cars (NaNs, strings, a datetime; classification of
`Origin` and regression of `Miles_per_Gallon`) and airports (high-cardinality strings and an id column; regression of
`latitude`). Every generator is fitted on the same 70% and samples as many rows, unconditionally (the class column is
an ordinary column for all of them).

- Ours: `train/configs/wine.yaml` without its condition column (the same hyper-parameters for every table), up to
  `--steps` updates of batch 64, with its privacy guard as a user gets it: 20% of the bench's training rows become
  the trainer's holdout and training stops at the first DCR check (every `--early_stop_every` updates) whose 90%
  lower bound is below `--early_stop` (0.9), keeping the last passing weights (the rows' `checks` hold the bounds;
  `--early_stop 0`: every training row, all updates, no check); sampled with DDPM (1,000 steps, TabDDPM's default)
  and with few-step DDIM / DPM-Solver++ on the same trained model (`--samplers`).
- `--conditional`: every generator samples the training rows' exact class counts of the first target instead. Ours
  trained with the class as `condition_column` and sampled with `class_labels`, and/or (`--ours_conditioning
  rejection`) trained as above, without it, and sampled by rejection on the class (`sample_with_values`); the SDV
  peers through `sample_from_conditions`, which for CTGAN and TVAE is rejection from their unconditional rows too.
- CTGAN and TVAE: as many updates as ours (batch 60 for CTGAN, whose batch must be a multiple of pac=10; 64 for TVAE;
  epochs = updates / steps per epoch), their other settings SDV's defaults. GaussianCopula: SDV's defaults.

Metrics (all against the same holdout): SDMetrics Shape (Column Shapes) and Trend (Column Pair Trends);
α-precision and β-recall (Alaa et al. 2022, synthcity's naive estimates, as TabSyn reports them); detection AUC of
a gradient-boosting classifier (HistGradientBoosting, 5-fold; 0.5 = indistinguishable); machine-learning efficiency
(TSTR: HistGradientBoosting trained on synthetic, scored on the holdout: macro F1 or R², beside TRTR); the DCR ratio
(median distance to the closest training row of synthetic rows over that of the holdout rows: about 1 is right,
below 1 is copying). `--guard` adds every generator's rows filtered by the near-copy guard (`reject_near_copies`, 5%
holdout quantile): its cost to ours' fidelity, and the peers' fidelity once their rows are as private.
`--per_column` adds ours' detection AUC on each column alone and on all the others (which columns give the rows
away). On tables with `COHERENCE` pairs (airports: `state` with `latitude` and `longitude`) every row also reports
the fraction of rows whose number lies inside its level's real training range (`in_level_range`; the real holdout's
under `holdout`), printed under the table.

CPU-heavy (1.5 to 10 minutes per table on one thread; airports is the slowest): on a shared machine run one table per
job, each writing `--out`, then print the merged table, e.g.

    for t in wine breast_cancer iris penguins cars airports; do
        python bench/tabular_quality.py --tables $t --guard --threads 1 --out results/$t.json
    done
    python bench/tabular_quality.py --merge results/*.json

SDV is a bench-only dependency: `pip install -c constraints.txt -e ".[bench]"`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import tempfile
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from diffusers_xai.evaluation import (  # noqa: E402
    evaluate_table,
    infer_metadata,
    train_synthetic_test_real,
)
from diffusers_xai.evaluation.tabular_fidelity import alpha_precision_beta_recall  # noqa: E402
from diffusers_xai.evaluation.tabular_privacy import reject_near_copies  # noqa: E402
from diffusers_xai.modalities.tabular.conditions import sample_with_values  # noqa: E402
from diffusers_xai.modalities.tabular.data import load_breast_cancer_frame, load_wine_frame  # noqa: E402
from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline  # noqa: E402
from diffusers_xai.training import TrainingConfig, train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> (scheduler, steps, scheduler kwargs, pipeline kwargs); the last two sample stochastically as DDPM does:
# DDIM with eta = 1 and DPM-Solver++'s SDE form (Lu et al. 2022, diffusers' `algorithm_type="sde-dpmsolver++"`)
SAMPLERS = {
    "ddpm1000": ("ddpm", 1000, {}, {}),
    "ddim50": ("ddim", 50, {}, {}),
    "ddim20": ("ddim", 20, {}, {}),
    "dpm25": ("dpmsolver", 25, {}, {}),
    "dpm50": ("dpmsolver", 50, {}, {}),
    "ddim50_eta1": ("ddim", 50, {}, {"eta": 1.0}),
    "sde_dpm25": ("dpmsolver", 25, {"algorithm_type": "sde-dpmsolver++"}, {}),
    "sde_dpm50": ("dpmsolver", 50, {"algorithm_type": "sde-dpmsolver++"}, {}),
}
DRAW_SEED_STEP = 100  # `--draws`: draw k samples from sampling seed seed + 100 (k - 1)
METRICS = [
    ("column_shapes", "Shape ↑"),
    ("column_pair_trends", "Trend ↑"),
    ("alpha_precision", "α-prec ↑"),
    ("beta_recall", "β-rec ↑"),
    ("detection_auc", "Detect AUC ↓"),
    ("tstr", "TSTR ↑"),
    ("dcr_ratio", "DCR ratio ≈1"),
]


# ---- tables ----
def _iris() -> pd.DataFrame:
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame["species"] = np.asarray(data.target_names)[data.target.to_numpy()].astype(object)
    return frame


def _penguins() -> pd.DataFrame:
    import palmerpenguins

    return palmerpenguins.load_penguins()


def _vega(name: str):
    def load() -> pd.DataFrame:
        from vega_datasets import local_data

        return getattr(local_data, name)()

    return load


# name: (loader, targets: the first one stratifies the split)
TABLES = {
    "wine": (load_wine_frame, ["cultivar"]),
    "breast_cancer": (load_breast_cancer_frame, ["diagnosis"]),
    "iris": (_iris, ["species"]),
    "penguins": (_penguins, ["species"]),
    "cars": (_vega("cars"), ["Origin", "Miles_per_Gallon"]),
    "airports": (_vega("airports"), ["latitude"]),
}
# columns that are classes although stored as ints
CLASS_COLUMNS = {"wine": ["cultivar"]}
# (level column, number column) pairs whose joint geometry the bench checks: a synthetic row is coherent when its
# number lies inside the real [min, max] of its level (an airport's latitude inside its state's latitudes)
COHERENCE = {"airports": [("state", "latitude"), ("state", "longitude")]}


def split(name: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    loader, targets = TABLES[name]
    frame = loader()
    target = frame[targets[0]]
    stratify = target if not pd.api.types.is_float_dtype(target) else None
    train_df, test_df = train_test_split(frame, test_size=0.3, random_state=seed, stratify=stratify)
    return train_df.reset_index(drop=True), test_df.reset_index(drop=True)


def metadata_for(name: str, frame: pd.DataFrame) -> dict:
    metadata = infer_metadata(frame)
    for column in CLASS_COLUMNS.get(name, []):
        metadata["columns"][column] = {"sdtype": "categorical"}
    return metadata


# ---- generators ----
def guard_settings(ratio: float | None, every: int, refit: bool) -> dict:
    """wine.yaml's privacy guard (`early_stopping_dcr_ratio`, on by default: 20% of the bench's training rows become
    the trainer's holdout, a DCR check every `every` updates; `refit`: then a second training on every bench training
    row for the number of updates the guard chose, `refit_on_all_rows`), or with `ratio` 0 every training row and no
    check."""
    if not ratio:
        return {
            "validation_split": 0.0,
            "validation_steps": None,
            "early_stopping_dcr_ratio": None,
            "refit_on_all_rows": False,
        }
    return {
        "validation_split": 0.2,
        "validation_steps": every,
        "early_stopping_dcr_ratio": ratio,
        "refit_on_all_rows": refit,
    }


def fit_ours(
    name: str, train_df: pd.DataFrame, steps: int, seed: int, workdir: str, encoding: str = "auto", **overrides
):
    path = os.path.join(workdir, "train.parquet")  # parquet keeps the dtypes (datetimes, ints with NaN as floats)
    train_df.to_parquet(path, index=False)
    config = TrainingConfig.from_yaml(
        os.path.join(REPO, "train", "configs", "wine.yaml"),
        {
            "dataset_name": path,
            "condition_column": None,
            "categorical_columns": CLASS_COLUMNS.get(name),
            "categorical_encoding": encoding,
            "output_dir": os.path.join(workdir, "ours"),
            "max_train_steps": steps,
            "checkpointing_steps": None,
            "eval_samples": None,  # the bench scores the rows itself
            "seed": seed,
            **overrides,
        },
    )
    start = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - start
    pipe = TabularXAIPipeline.from_pretrained(config.output_dir)
    pipe.set_progress_bar_config(disable=True)
    pipe.train_result = result  # the early-stopping run reports where it stopped
    return pipe, seconds


def stop_info(pipe) -> dict:
    """Where the DCR guard stopped ours (the last update, the update whose weights were kept, every check)."""
    result = pipe.train_result
    if result.holdout_pass is not None:  # refit on every row for the step the guard chose
        first = result.holdout_pass
        return {
            "stopped_at": first.global_step,
            "kept_step": first.restored_step,
            "checks": first.early_stopping_history,
            "refit_steps": result.global_step,
        }
    return {
        "stopped_at": result.global_step,
        "kept_step": result.restored_step,
        "checks": result.early_stopping_history,
    }


def sample_ours(
    pipe: TabularXAIPipeline, sampler: str, n: int, seed: int, class_labels=None, **call_kwargs
) -> pd.DataFrame:
    """`n` rows of `sampler`; `call_kwargs` (e.g. `guidance_scale`) go to the pipeline beside the sampler's own."""
    scheduler, steps, scheduler_kwargs, sampler_kwargs = SAMPLERS[sampler]
    pipe.set_scheduler(scheduler, **scheduler_kwargs)
    generator = torch.Generator().manual_seed(seed)
    return pipe(
        num_rows=n,
        generator=generator,
        num_inference_steps=steps,
        class_labels=class_labels,
        **sampler_kwargs,
        **call_kwargs,
    ).rows


def sdv_updates_settings(kind: str, n: int, updates: int) -> dict:
    """Batch size and epochs giving `updates` optimiser steps: CTGAN takes max(n // batch, 1) steps per epoch (its
    batch a multiple of pac = 10), TVAE ceil(n / batch) (a DataLoader without drop_last)."""
    if kind == "CTGAN":
        batch = 60
        per_epoch = max(n // batch, 1)
    else:
        batch = 64
        per_epoch = math.ceil(n / batch)
    return {"batch_size": batch, "epochs": max(1, round(updates / per_epoch))}


def fit_sdv(kind: str, train_df: pd.DataFrame, metadata: dict, seed: int, updates: int):
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

    sdv_metadata = Metadata.load_from_dict(metadata, single_table_name="table")
    torch.manual_seed(seed)
    np.random.seed(seed)
    if kind == "GaussianCopula":
        synth = GaussianCopulaSynthesizer(sdv_metadata)
    elif kind == "CTGAN":
        synth = CTGANSynthesizer(sdv_metadata, enable_gpu=False, **sdv_updates_settings(kind, len(train_df), updates))
    else:
        synth = TVAESynthesizer(sdv_metadata, enable_gpu=False, **sdv_updates_settings(kind, len(train_df), updates))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synth.fit({"table": train_df})  # SDV 2 takes {table_name: DataFrame}
    seconds = time.perf_counter() - start

    def sample(n: int, labels: pd.Series | None = None, random_state: int | None = None) -> pd.DataFrame:
        """`n` rows, or with `labels` (a column's values) rows with exactly those values: SDV's conditional sampling
        (the copula's conditional for GaussianCopula; for CTGAN and TVAE, whose SDV `_sample` refuses conditions,
        SDV's reject sampling of unconditional rows). Every call draws from `random_state` (default `seed`)."""
        from sdv.sampling import Condition

        if hasattr(synth, "set_random_state"):
            synth.set_random_state(seed if random_state is None else random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if labels is None:
                sampled = synth.sample(num_rows=n)
            else:
                counts = labels.value_counts()
                conditions = [
                    Condition(num_rows=int(k), column_values={labels.name: _py(v)}) for v, k in counts.items()
                ]
                sampled = synth.sample_from_conditions(conditions)
        sampled = sampled["table"] if isinstance(sampled, dict) else sampled
        return sampled[list(train_df.columns)]

    return sample, seconds


def _py(value):
    return value.item() if isinstance(value, np.generic) else value


def fit_ours_from_args(name: str, train_df: pd.DataFrame, workdir: str, args, **fit_kwargs):
    """[`fit_ours`] with the command line's steps, seed, categorical encoding and DCR-guard settings."""
    guard = guard_settings(args.early_stop, args.early_stop_every, args.refit)
    guard["early_stopping_confidence"] = args.early_stop_confidence
    overrides = {**fit_kwargs, **guard, **args.set}
    return fit_ours(name, train_df, args.steps, args.seed, workdir, args.categorical_encoding, **overrides)


def run_conditional(name: str, train_df, test_df, targets, metadata, args) -> dict:
    """`--conditional`: every generator conditioned on the class target, sampled with the training rows' exact class
    counts; ours trained with `condition_column` (`--ours_conditioning condition_column`) and/or trained without it
    and sampled by rejection on the class (`rejection`: `sample_with_values`, as SDV samples CTGAN and TVAE), the SDV
    peers (fitted as usual) through `sample_from_conditions`."""
    target, n, rows = targets[0], len(train_df), {}
    if pd.api.types.is_float_dtype(train_df[target]):
        raise ValueError(f"--conditional needs a class target; {name}'s {target!r} is a number.")
    labels = train_df[target].sample(frac=1.0, random_state=args.seed).reset_index(drop=True)
    if "condition_column" in args.ours_conditioning:
        rows.update(_conditioned_ours(name, train_df, test_df, targets, metadata, labels, args))
    if "rejection" in args.ours_conditioning:
        rows.update(_rejection_ours(name, train_df, test_df, targets, metadata, labels, args))
    for kind in args.peers:
        sample, seconds = fit_sdv(kind, train_df, metadata, args.seed, args.steps)
        rows[f"SDV {kind} (cond)"] = {
            **score(train_df, test_df, sample(n, labels), targets, metadata, args.seed, name),
            "train_s": seconds,
        }
    return rows


def _conditioned_ours(name: str, train_df, test_df, targets, metadata, labels: pd.Series, args) -> dict:
    """Ours trained with the class target as `condition_column`, sampled with `class_labels` at each guidance."""
    target, rows = targets[0], {}
    others = [c for c in CLASS_COLUMNS.get(name, []) if c != target] or None
    if not args.samplers:
        return rows
    with tempfile.TemporaryDirectory() as workdir:
        pipe, seconds = fit_ours_from_args(
            name, train_df, workdir, args, condition_column=target, categorical_columns=others,
            class_dropout_prob=args.class_dropout_prob,
        )  # fmt: skip
        for sampler, scale, k in itertools.product(args.samplers, args.guidance_scales, range(args.draws)):
            synthetic = sample_ours(
                pipe, sampler, len(train_df), args.seed + DRAW_SEED_STEP * k, class_labels=labels.tolist(),
                guidance_scale=scale,
            )  # fmt: skip
            guided = f", guidance {scale:g}" if scale != 1 else ""
            rows[f"ours ({sampler}, cond{guided}{f', draw {k + 1}' if k else ''})"] = {
                **score(train_df, test_df, synthetic, targets, metadata, args.seed, name),
                "train_s": seconds,
                **stop_info(pipe),
            }
    return rows


def _rejection_ours(name: str, train_df, test_df, targets, metadata, labels: pd.Series, args) -> dict:
    """Ours trained as the unconditional bench trains it (the class an ordinary column), then sampled by rejection
    until every class has its training count; round r of a sampler's draw k (`--draws`, from 0) draws with seed
    `seed + k + r * DRAW_SEED_STEP`."""
    rows = {}
    if not args.samplers:
        return rows
    with tempfile.TemporaryDirectory() as workdir:
        pipe, seconds = fit_ours_from_args(name, train_df, workdir, args)
        for sampler in args.samplers:
            for k in range(args.draws):  # draw 1 is the table's row; more: the sampling noise of every number
                drawn = []

                def sample(n: int, round_index: int, sampler=sampler, drawn=drawn, k=k) -> pd.DataFrame:
                    drawn.append(n)
                    return sample_ours(pipe, sampler, n, args.seed + k + round_index * DRAW_SEED_STEP)

                synthetic = sample_with_values(
                    sample, targets[0], labels.tolist(), progress=False, preprocessor=pipe.preprocessor
                )
                rows[f"ours ({sampler}, rejection{f', draw {k + 1}' if k else ''})"] = {
                    **score(train_df, test_df, synthetic, targets, metadata, args.seed, name),
                    "train_s": seconds,
                    "rows_drawn": sum(drawn),
                    **stop_info(pipe),
                }
    return rows


# ---- scoring ----
def score(train_df, test_df, synthetic, targets, metadata, seed, name: str = "") -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = evaluate_table(
            train_df,
            synthetic,
            target=targets[0],
            real_test=test_df,
            metadata=metadata,
            sdmetrics_privacy=False,
            seed=seed,
        )
        alpha = alpha_precision_beta_recall(train_df, synthetic, metadata)
    out = {key: float(report[key].value) for key in ("column_shapes", "column_pair_trends", "detection_auc", "tstr")}
    out.update(trtr=float(report["trtr"].value), dcr_ratio=float(report["dcr_ratio"].value), **alpha.to_dict())
    for target in targets[1:]:
        extra = train_synthetic_test_real(train_df, synthetic, test_df, target, metadata, seed=seed)
        out[f"tstr:{target}"], out[f"trtr:{target}"] = extra.tstr, extra.trtr
    return {**out, **coherence(name, train_df, synthetic)}


def in_level_range(real: pd.DataFrame, rows: pd.DataFrame, level: str, number: str) -> float:
    """The fraction of `rows` whose `number` lies inside the [min, max] of `number` over the `real` rows of the same
    `level` (a row of a level absent from `real`, or with the number missing, counts as outside). Real holdout rows
    against the training rows give the reference (airports' latitude in its state's range: most, not all, since a
    state's holdout airports can lie beyond its training ones)."""
    bounds = real.groupby(level)[number].agg(["min", "max"])
    lo = rows[level].map(bounds["min"]).to_numpy(np.float64, na_value=np.nan)
    hi = rows[level].map(bounds["max"]).to_numpy(np.float64, na_value=np.nan)
    values = rows[number].to_numpy(np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return float(np.mean((values >= lo) & (values <= hi)))


def coherence(name: str, train_df: pd.DataFrame, rows: pd.DataFrame) -> dict:
    """`in_level_range` of each of the table's `COHERENCE` pairs, keyed `in_range:level/number`."""
    return {f"in_range:{lv}/{num}": in_level_range(train_df, rows, lv, num) for lv, num in COHERENCE.get(name, [])}


def per_column_detection(train_df, synthetic, metadata, seed) -> dict:
    """Which columns give synthetic rows away: the detection AUC on each modelled column alone and on all the others
    (a column whose removal drops the AUC is one the detector relies on); `__all__` is the full table's."""
    from diffusers_xai.evaluation import detection_auc

    columns = metadata["columns"]
    out = {"__all__": detection_auc(train_df, synthetic, metadata, seed=seed)}
    for c in [c for c, spec in columns.items() if spec["sdtype"] != "id"]:
        others = [k for k in columns if k != c]
        alone = detection_auc(train_df[[c]], synthetic[[c]], {"columns": {c: columns[c]}}, seed=seed)
        rest = detection_auc(
            train_df[others], synthetic[others], {"columns": {k: columns[k] for k in others}}, seed=seed
        )
        out[c] = {"alone": alone, "without": rest}
    print("per-column detection AUC (alone / without):", json.dumps(out), flush=True)
    return out


def per_pair_trends(train_df, synthetic, metadata) -> dict:
    """Which column pairs lower Trend: SDMetrics' Column Pair Trends score of each pair, the property (`__all__`, the
    mean over the scored pairs) and, per column, the mean over the pairs without it (`without:<column>`: a column whose
    pairs drag Trend down raises it)."""
    from sdmetrics.reports.single_table import QualityReport

    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(train_df, synthetic, metadata, verbose=False)
    details = report.get_details("Column Pair Trends").dropna(subset=["Score"])
    pairs = {(a, b): float(v) for a, b, v in zip(details["Column 1"], details["Column 2"], details["Score"])}
    out = {"__all__": float(np.mean(list(pairs.values())))}
    for column in dict.fromkeys(c for pair in pairs for c in pair):
        kept = [v for pair, v in pairs.items() if column not in pair]
        out[f"without:{column}"] = float(np.mean(kept)) if kept else float("nan")
    out.update({f"{a} | {b}": v for (a, b), v in pairs.items()})
    print("per-pair Trend:", json.dumps(out), flush=True)
    return out


def run_ours(name: str, train_df, test_df, targets, metadata, args) -> dict:
    """Ours trained once and sampled with each of `--samplers` (plus the guard and the early-stopped model)."""
    n, rows = len(train_df), {}
    with tempfile.TemporaryDirectory() as workdir:
        pipe, seconds = fit_ours_from_args(name, train_df, workdir, args)
        stop = stop_info(pipe)
        for sampler in args.samplers:
            start = time.perf_counter()
            synthetic = sample_ours(pipe, sampler, n, args.seed)
            rows[f"ours ({sampler})"] = {
                **score(train_df, test_df, synthetic, targets, metadata, args.seed, name),
                "train_s": seconds,
                "sample_s": time.perf_counter() - start,
                **stop,
            }
            for k in range(1, args.draws):  # more draws from the same model: the sampling noise of every number
                drawn = sample_ours(pipe, sampler, n, args.seed + DRAW_SEED_STEP * k)  # `synthetic` stays draw 1
                rows[f"ours ({sampler}, draw {k + 1})"] = {
                    **score(train_df, test_df, drawn, targets, metadata, args.seed, name),
                    "train_s": seconds,
                }
            if args.per_column:
                rows[f"ours ({sampler})"]["per_column_detection"] = per_column_detection(
                    train_df, synthetic, metadata, args.seed
                )
            if args.per_pair:
                rows[f"ours ({sampler})"]["per_pair_trends"] = per_pair_trends(train_df, synthetic, metadata)
        if args.guard:
            draw = lambda k, r: sample_ours(pipe, args.samplers[0], k, args.seed + 1 + r)  # noqa: E731
            rows[f"ours ({args.samplers[0]}, guard)"] = {
                **guarded_score(draw, name, train_df, test_df, targets, metadata, args, pipe.preprocessor),
                "train_s": seconds,
            }
    return rows


def guarded_score(draw, name: str, train_df, test_df, targets, metadata, args, preprocessor=None) -> dict:
    """The scores of `len(train_df)` rows of `draw(n, round)` that pass the near-copy guard (`reject_near_copies`, 5%
    holdout quantile), and the share it rejected: any generator's rows made as private as the guard makes them."""
    guarded = reject_near_copies(draw, len(train_df), train_df, test_df, 0.05, metadata, preprocessor=preprocessor)
    return {
        **score(train_df, test_df, guarded.rows, targets, metadata, args.seed, name),
        "rejected": guarded.rejection_rate,
    }


def run_table(name: str, args) -> dict:
    train_df, test_df = split(name, args.seed)
    targets = TABLES[name][1]
    metadata = metadata_for(name, train_df)
    n = len(train_df)
    if args.conditional:
        rows = run_conditional(name, train_df, test_df, targets, metadata, args)
        return {"train_rows": n, "test_rows": len(test_df), "targets": targets, "generators": rows}
    # no `--samplers`: peers only (a table too slow for one job runs ours and each peer in its own, then `--merge`)
    rows = run_ours(name, train_df, test_df, targets, metadata, args) if args.samplers else {}
    for kind in args.peers:
        sample, seconds = fit_sdv(kind, train_df, metadata, args.seed, args.steps)
        start = time.perf_counter()
        synthetic = sample(n)
        rows[f"SDV {kind}"] = {
            **score(train_df, test_df, synthetic, targets, metadata, args.seed, name),
            "train_s": seconds,
            "sample_s": time.perf_counter() - start,
        }
        if args.per_pair:
            rows[f"SDV {kind}"]["per_pair_trends"] = per_pair_trends(train_df, synthetic, metadata)
        if args.guard:  # round r draws from random state seed + (r + 1) * DRAW_SEED_STEP, not the rows above
            draw = lambda k, r: sample(k, random_state=args.seed + (r + 1) * DRAW_SEED_STEP)  # noqa: E731, B023
            rows[f"SDV {kind} (guard)"] = {
                **guarded_score(draw, name, train_df, test_df, targets, metadata, args),
                "train_s": seconds,
            }
    holdout = coherence(name, train_df, test_df)  # the real reference of the in_range scores
    if args.per_pair:  # and of the pair trends: fresh real rows scored as a generator's would be
        holdout["per_pair_trends"] = per_pair_trends(train_df, test_df, metadata)
    return {"train_rows": n, "test_rows": len(test_df), "targets": targets, "generators": rows, "holdout": holdout}


def markdown(results: dict) -> str:
    header = "| table | generator | " + " | ".join(label for _, label in METRICS) + " | TRTR | train s |"
    lines = [header, "|" + "---|" * (len(METRICS) + 4)]
    for name, result in results.items():
        targets = result["targets"]
        for generator, r in result["generators"].items():
            tstr = f"{r['tstr']:.3f}" + "".join(f" / {r[f'tstr:{t}']:.3f}" for t in targets[1:])
            trtr = f"{r['trtr']:.3f}" + "".join(f" / {r[f'trtr:{t}']:.3f}" for t in targets[1:])
            cells = [f"{r[key]:.3f}" if key != "tstr" else tstr for key, _ in METRICS]
            lines.append(f"| {name} | {generator} | " + " | ".join(cells) + f" | {trtr} | {r['train_s']:.0f} |")
    return "\n".join(lines)


def coherence_text(results: dict) -> str:
    """A line per generator of the tables with `COHERENCE` pairs: its `in_range` fractions (the real holdout first)."""
    lines = []
    for name, result in results.items():
        for generator, r in {"real holdout": result.get("holdout", {}), **result["generators"]}.items():
            cells = [f"{k[len('in_range:') :]} {v:.3f}" for k, v in r.items() if k.startswith("in_range:")]
            if cells:
                lines.append(f"{name} | {generator} | in its level's real range: " + ", ".join(cells))
    return "\n".join(lines)


def merge(paths: list[str]) -> dict:
    """The results of several `--out` files (one table per run, e.g. one per job on a shared machine), in order; a
    later file's generators replace an earlier file's of the same name on the same table (a rerun of one sampler)."""
    results: dict = {}
    for path in paths:
        with open(path) as f:
            for name, result in json.load(f).items():
                if name in results:
                    results[name]["generators"].update(result["generators"])
                else:
                    results[name] = result
    return results


def main(args) -> dict:
    if args.merge:
        results = merge(args.merge)
        print(markdown(results))
        print(coherence_text(results))
        return results
    torch.set_num_threads(args.threads)
    results = {}
    for name in args.tables:
        start = time.perf_counter()
        try:
            results[name] = run_table(name, args)
        except Exception as err:  # one table's failure must not cost the others' numbers (printed, not hidden)
            print(f"[{name}: FAILED {type(err).__name__}: {err}]", flush=True)
            continue
        print(f"[{name}: {time.perf_counter() - start:.0f} s]", flush=True)
        if args.out:
            with open(args.out + ".tmp", "w") as f:
                json.dump(results, f, indent=2)
            os.replace(args.out + ".tmp", args.out)
    targets = ", ".join(f"{name}: {' / '.join(r['targets'])}" for name, r in results.items())
    print(
        f"\n{'Conditional' if args.conditional else 'Unconditional'} generators, {args.steps} updates for "
        f"ours/CTGAN/TVAE, {args.threads} threads, "
        f"seed {args.seed}; TSTR targets (macro F1 for classes, R² for numbers) — {targets}\n"
    )
    print(markdown(results))
    print(coherence_text(results))
    return results


def _key_value(item: str, parser) -> tuple[str, object]:
    """`KEY=VALUE` of `--set`, the value read as YAML (numbers, booleans, null, lists)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        parser.error(f"--set takes KEY=VALUE items (e.g. dropout=0.1), got {item!r}.")
    return key, yaml.safe_load(value)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--steps", type=int, default=4000, help="Optimiser updates for ours, CTGAN and TVAE.")
    parser.add_argument(
        "--samplers",
        nargs="*",
        default=["ddpm1000", "ddim50", "dpm25"],
        choices=list(SAMPLERS),
        help="Our samplers; none: ours is not trained (peers only).",
    )
    parser.add_argument(
        "--peers", nargs="*", default=["GaussianCopula", "CTGAN", "TVAE"], choices=["GaussianCopula", "CTGAN", "TVAE"]
    )
    parser.add_argument(
        "--guard", action="store_true", help="Also score every generator's rows through the near-copy guard."
    )
    parser.add_argument(
        "--early_stop",
        type=float,
        default=0.9,
        help="Ours' `early_stopping_dcr_ratio` (wine.yaml's 0.9); 0: no guard, every training row, all updates.",
    )
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="Condition every generator on the class target (exact training class counts) instead.",
    )
    parser.add_argument(
        "--ours_conditioning",
        nargs="+",
        default=["condition_column"],
        choices=["condition_column", "rejection"],
        help="With --conditional: ours trained with the class as `condition_column` (default), and/or trained without "
        "it and sampled by rejection on the class (as SDV samples CTGAN and TVAE); each trains its own model.",
    )
    parser.add_argument(
        "--class_dropout_prob",
        type=float,
        default=0.0,
        help="With --conditional: ours' `class_dropout_prob` (a null class, so it can be sampled with guidance).",
    )
    parser.add_argument(
        "--guidance_scales",
        type=float,
        nargs="+",
        default=[1.0],
        help="With --conditional: sample ours at each classifier-free guidance scale (> 1: --class_dropout_prob).",
    )
    parser.add_argument("--early_stop_every", type=int, default=250, help="Updates between two DCR checks.")
    parser.add_argument(
        "--early_stop_confidence",
        type=float,
        default=0.9,
        help="Ours' `early_stopping_confidence` (wine.yaml's 0.9): a check passes when the DCR ratio's lower bound at "
        "this confidence is >= --early_stop; 0.5: the bootstrap's median.",
    )
    parser.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Ours' `refit_on_all_rows`: after the guard, train again on every training row for the updates it chose.",
    )
    parser.add_argument(
        "--per_column",
        action="store_true",
        help="Also score the detection AUC of ours' rows per column (alone / without it): what gives them away.",
    )
    parser.add_argument(
        "--categorical_encoding",
        default="auto",
        help="Ours' `categorical_encoding` (wine.yaml's key; the bench's default 'auto').",
    )
    parser.add_argument(
        "--per_pair",
        action="store_true",
        help="Also score Trend per column pair and without each column's pairs (ours, the peers and, as the real "
        "reference, the holdout rows): what lowers it.",
    )
    parser.add_argument(
        "--draws",
        type=int,
        default=1,
        help=f"Samples per sampler (and guidance scale) from ours' one trained model (sampling seeds seed, seed + "
        f"{DRAW_SEED_STEP}, ...; by rejection, draw k's rounds from seed + k): how much a number moves with the draw "
        "alone.",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="Ours' training keys on top of wine.yaml and the flags above (YAML values), e.g. `--set dropout=0.1`.",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="Write the numbers as JSON here (after every table).")
    parser.add_argument(
        "--merge", nargs="+", default=None, help="Only print the table of these `--out` files (runs nothing)."
    )
    args = parser.parse_args(argv)
    args.set = dict(_key_value(item, parser) for item in args.set)
    if not args.conditional and (args.class_dropout_prob or args.guidance_scales != [1.0]):
        parser.error("--class_dropout_prob and --guidance_scales condition ours: add --conditional.")
    if (args.class_dropout_prob or args.guidance_scales != [1.0]) and "condition_column" not in args.ours_conditioning:
        parser.error("--class_dropout_prob and --guidance_scales guide the condition_column model: add "
                     "`--ours_conditioning condition_column`.")  # fmt: skip
    return args


if __name__ == "__main__":
    main(parse_args())

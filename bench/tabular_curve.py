"""The DCR guard's cost, update by update: ours trained on one benchmark table as `bench/tabular_quality.py` trains
it (wine.yaml, the guard's 20% holdout), with a check every `--every` updates that is recorded but never stops the
run; then the EMA weights of every check sampled and scored as the benchmark scores them (Trend, detection AUC,
TSTR and the DCR ratio against the benchmark's own 30% holdout, which the guard never sees).

Each row shows what the guard read at that update (its lower bound; it stops below 0.9) beside what fresh real rows
say of the same weights, so the update the guard keeps can be read against the ones it did not reach:

    python bench/tabular_curve.py --table iris --seed 0 --conditioning condition_column
    python bench/tabular_curve.py --table iris --seed 0 --conditioning rejection

Prints a markdown table and the update the guard keeps with checks every `--every` updates, and every 250 (the
recipe's `validation_steps`) when `--every` divides 250. The missingness and point-mass thresholds are calibrated on
the last weights only, so every check's rows of a table with missing values or point masses (penguins, cars,
breast_cancer) are decided at those: read their curves with that in mind. Timing is not measured.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_parser  # noqa: E402

CONDITIONINGS = ("condition_column", "rejection")


def parse_args(argv=None):
    parser = bench_parser(__doc__, threads=1)
    parser.add_argument("--table", required=True, help="A table of bench/tabular_quality.py (e.g. iris, wine).")
    parser.add_argument("--seed", type=int, default=0, help="The split's, training's and sampling's seed.")
    parser.add_argument("--conditioning", choices=CONDITIONINGS, default="condition_column")
    parser.add_argument("--every", type=int, default=100, help="Updates between checks.")
    parser.add_argument("--steps", type=int, default=4000, help="Updates in all (wine.yaml's max_train_steps).")
    parser.add_argument("--ratio", type=float, default=0.9, help="The guard's threshold (early_stopping_dcr_ratio).")
    parser.add_argument("--json", default=None, help="Also write the rows to this JSON file.")
    return parser.parse_args(argv)


def train_recording(tq, table: str, train_df, args) -> tuple[object, list[tuple[int, float, dict]]]:
    """Ours trained with every check recorded as `(update, lower bound, EMA weights)` and passed, so that the run
    goes to the end. The trainer has no per-check hook, so the one function each check goes through is wrapped."""
    import diffusers_xai.training.trainer as trainer

    checks, record_check = [], trainer.record_check

    def recording(run, step, model, check):
        name, value, _ = check
        checks.append((step, float(value), {k: v.detach().clone() for k, v in model.state_dict().items()}))
        return record_check(run, step, model, (name, value, True))

    overrides = {**tq.guard_settings(args.ratio, args.every, False), "early_stopping_confidence": 0.9}
    if args.conditioning == "condition_column":
        target = tq.TABLES[table][1][0]
        others = [c for c in tq.CLASS_COLUMNS.get(table, []) if c != target] or None
        overrides.update(condition_column=target, categorical_columns=others, class_dropout_prob=0.0)
    trainer.record_check = recording
    try:
        with tempfile.TemporaryDirectory() as workdir:
            pipe, _ = tq.fit_ours(table, train_df, args.steps, args.seed, workdir, "auto", **overrides)
    finally:
        trainer.record_check = record_check
    return pipe, checks


def kept_update(checks: list[tuple[int, float, dict]], every: int, ratio: float) -> int | None:
    """The update whose weights the guard keeps when it checks every `every` updates: the last check before the
    first one below `ratio` (`None`: the first check fails). When that is no check or the first one, the trainer
    trains again with checks 5 times as often (`finer_check_steps`), which this does not repeat."""
    kept = None
    for step, bound, _ in checks:
        if step % every:
            continue
        if bound < ratio:
            return kept
        kept = step
    return checks[-1][0] if checks else None


def main(argv=None) -> list[dict]:
    import tabular_quality as tq

    from diffusers_xai.modalities.tabular.conditions import sample_with_values

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    train_df, test_df = tq.split(args.table, args.seed)
    targets = tq.TABLES[args.table][1]
    metadata = tq.metadata_for(args.table, train_df)
    labels = train_df[targets[0]].sample(frac=1.0, random_state=args.seed).reset_index(drop=True).tolist()
    pipe, checks = train_recording(tq, args.table, train_df, args)

    def draw(n: int, round_index: int):
        return tq.sample_ours(pipe, "ddpm1000", n, args.seed + round_index * tq.DRAW_SEED_STEP)

    rows = []
    print("| update | guard's lower bound | Trend | detection AUC | TSTR | DCR ratio (bench holdout) |")
    print("|---|---|---|---|---|---|")
    for step, bound, state in checks:
        pipe.denoiser.load_state_dict(state)
        if args.conditioning == "condition_column":
            synthetic = tq.sample_ours(pipe, "ddpm1000", len(train_df), args.seed, class_labels=labels)
        else:
            synthetic = sample_with_values(draw, targets[0], labels, progress=False, preprocessor=pipe.preprocessor)
        score = tq.score(train_df, test_df, synthetic, targets, metadata, args.seed, args.table)
        keys = ("column_pair_trends", "detection_auc", "tstr", "dcr_ratio")
        rows.append({"update": step, "lower_bound": bound, **{key: score[key] for key in keys}})
        print(f"| {step} | {bound:.3f} | " + " | ".join(f"{score[key]:.3f}" for key in keys) + " |", flush=True)
    for every in [e for e in dict.fromkeys((args.every, 250)) if e % args.every == 0]:
        print(f"checks every {every} updates: the guard keeps update {kept_update(checks, every, args.ratio)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()

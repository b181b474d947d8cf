"""`diffusers-xai generate`: a sharded synthetic dataset from a saved pipeline, optionally pushed to the Hub.

Runs on one process, or on several with `accelerate launch -m diffusers_xai.cli generate ...`
(the missing shards are split across processes).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from . import add_documented_parser, flags_for

__all__ = ["add_arguments", "main", "register", "run"]


def _checked(cast: Callable[[str], float], accept: Callable[[float], bool], what: str) -> Callable[[str], float]:
    """An argparse `type=`: `cast(text)`, rejected with "must be {what}" when it fails or `accept` says no."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


_positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _checked(int, lambda v: v >= 0, "a non-negative integer")
_positive_float = _checked(float, lambda v: v > 0, "a positive number")
_at_least_one = _checked(float, lambda v: v >= 1, "a number >= 1")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--pipeline", required=True, help="A `save_pretrained` directory or a Hub model repo id.")
    parser.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of --pipeline.")
    parser.add_argument("--num_samples", required=True, type=_positive_int, help="Number of samples to generate.")
    parser.add_argument("--out", required=True, help="Output directory (created; resumed if it holds this run).")
    parser.add_argument("--shard_size", type=_positive_int, default=1000, help="Samples per Parquet shard.")
    parser.add_argument("--batch_size", type=_positive_int, default=16, help="Samples per pipeline call.")
    parser.add_argument("--num_inference_steps", type=_positive_int, default=50)
    parser.add_argument(
        "--scheduler", choices=["ddpm", "ddim", "dpmsolver"], default=None, help="Default: the pipeline's own."
    )
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="Sample i uses seed `seed + i`.")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="Add per-sample explanation summaries (commit_step, commit_fraction, attention_entropy).",
    )
    parser.add_argument(
        "--class_labels",
        nargs="+",
        default=None,
        help="Classes of a class-conditional model (class names or indices for images, condition-column values for "
        "tables); sample i gets label i mod their count. Images get a `label` column.",
    )
    parser.add_argument(
        "--guidance_scale",
        type=_at_least_one,
        default=1.0,
        help="Classifier-free guidance for a model with a null class (1 = none).",
    )
    parser.add_argument(
        "--given_column",
        default=None,
        help="Tables from a model trained without this column as its condition: --class_labels are values of this "
        "categorical column, and sample i keeps the first of its own draws that holds value i mod their count "
        "(rejection, as SDV samples CTGAN/TVAE). Not with --explain.",
    )
    parser.add_argument(
        "--max_tries", type=_positive_int, default=100, help="Draws per sample with --given_column before giving up."
    )
    parser.add_argument("--commit_eps", type=_positive_float, default=0.1, help="Commit tolerance in data units.")
    parser.add_argument("--summary_steps", type=_positive_int, default=50, help="Traced steps for the summaries.")
    parser.add_argument("--license", default="other", help="License id for the dataset card (use the model's).")
    parser.add_argument("--pretty_name", default=None, help="Title of the dataset card.")
    parser.add_argument(
        "--evaluation_report", default=None, help="JSON written by `EvaluationReport.save`, shown in the card."
    )
    parser.add_argument(
        "--memorisation_json", default=None, help="JSON object of memorisation-check results, shown in the card."
    )
    parser.add_argument("--push_to_hub", action="store_true", help="Upload the dataset to --hub_dataset_id.")
    parser.add_argument("--hub_dataset_id", default=None, help="Dataset repo id, e.g. `user/synthetic-digits`.")
    parser.add_argument("--hub_private", action="store_true", help="Create the dataset repo as private.")
    return parser


def _read_json(path: str | None, flag: str):
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{flag} {path!r} could not be read as JSON: {err}") from err


def run(args: argparse.Namespace) -> int:
    """Validate everything, load the pipeline, generate the missing shards, write the card, push (main process)."""
    from ..evaluation.report import EvaluationReport
    from ..generation import distributed_state, generate_dataset, load_pipeline, push_dataset_to_hub

    if args.push_to_hub and not args.hub_dataset_id:
        raise ValueError("--push_to_hub needs --hub_dataset_id (e.g. `your-name/synthetic-digits`).")
    evaluation = _read_json(args.evaluation_report, "--evaluation_report")
    if evaluation is not None:
        evaluation = EvaluationReport.from_dict(evaluation)
    memorisation = _read_json(args.memorisation_json, "--memorisation_json")
    if memorisation is not None and not isinstance(memorisation, dict):
        raise ValueError(f"--memorisation_json must hold a JSON object, got {type(memorisation).__name__}.")
    card_kwargs = {"license": args.license, "pretty_name": args.pretty_name}
    card_kwargs.update(evaluation=evaluation, memorisation=memorisation)

    state = distributed_state()
    pipeline, resolved_revision = load_pipeline(args.pipeline, revision=args.revision)
    if args.scheduler is not None:
        pipeline.set_scheduler(args.scheduler)
    result = generate_dataset(
        pipeline,
        args.out,
        **flags_for(generate_dataset, args, exclude=("pipeline",)),  # --pipeline names the model: source_model
        base_seed=args.seed,
        source_model=args.pipeline,
        model_revision=resolved_revision,
        state=state,
        card_kwargs=card_kwargs,
    )
    if state.is_main_process:
        print(
            f"{result.output_dir}: {len(result.shard_paths)} shards, {args.num_samples} samples "
            f"({len(result.skipped)} shards were already complete)."
        )
        if args.push_to_hub:
            url = push_dataset_to_hub(
                result.output_dir, args.hub_dataset_id, private=args.hub_private or None, **card_kwargs
            )
            print(f"Pushed to {url}")
    state.wait_for_everyone()
    return 0


def _run_cli(args: argparse.Namespace) -> int:
    from ..errors import report_user_errors

    return report_user_errors("diffusers-xai generate", lambda: run(args), debug=getattr(args, "debug", False))


def register(subparsers) -> None:
    parser = add_documented_parser(
        subparsers,
        "generate",
        "Generate a sharded, resumable synthetic dataset (Parquet, HF datasets) from a saved pipeline.",
        __doc__,
    )
    add_arguments(parser)
    parser.set_defaults(func=_run_cli)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="generate_dataset", description=__doc__)
    return _run_cli(add_arguments(parser).parse_args(argv))

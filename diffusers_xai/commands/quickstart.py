"""`diffusers-xai quickstart`: the main job on the embedded digits data."""

from __future__ import annotations

import json

from . import flags_for


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="Train a small UNet on scikit-learn's digits, sample with a trace, explain and evaluate.",
        description="Train a small UNet2DModel on the built-in digits (16x16) for a few CPU minutes, sample with a "
        "trace, write samples/trajectory/attention PNGs, explanations, evaluation and summary.json.",
    )
    p.add_argument("--output_dir", default="outputs/quickstart", help="Folder for everything the run writes.")
    p.add_argument("--max_train_steps", type=int, default=1200, help="Optimizer steps (default: 1200).")
    p.add_argument("--max_train_minutes", type=float, default=6.0, help="Wall-clock training budget (default: 6).")
    p.add_argument("--num_samples", type=int, default=16, help="Images in the traced sample grid (default: 16).")
    p.add_argument("--num_inference_steps", type=int, default=50, help="Sampling steps (default: 50).")
    p.add_argument(
        "--scheduler", default="ddim", choices=["ddpm", "ddim", "dpmsolver"], help="Sampler (default: ddim)."
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_eval_samples", type=int, default=256, help="Generated images for the evaluation.")
    p.add_argument("--no_explain", dest="explain", action="store_false", help="Skip the explanations.")
    p.add_argument(
        "--explain_methods",
        nargs="+",
        default=None,
        help="Explanation methods (default: the trajectory plus the map methods that passed their checks).",
    )
    p.add_argument("--no_evaluate", dest="evaluate", action="store_false", help="Skip the evaluation.")
    p.add_argument("--resume", action="store_true", help="Resume training from the latest checkpoint in output_dir.")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..quickstart import run_quickstart

    summary = run_quickstart(**flags_for(run_quickstart, args))
    print(json.dumps({k: summary[k] for k in ("pipeline", "training", "sampling", "files")}, indent=2, default=str))
    print(f"Wrote {args.output_dir}/summary.json")
    return 0

"""`diffusers-xai push DIR --repo-id user/name`: push a saved pipeline folder with its explanation card."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "push",
        help="Push a saved pipeline folder (with its explanation card and figures) to the Hugging Face Hub.",
        description=(
            "Push DIR (written by save_pretrained / save_pretrained_with_card / training) to the Hub in one commit. "
            "The explanation card is (re)written into DIR first if it has none or if --card-json/--figures-dir are "
            "given. The token comes from HF_TOKEN or `hf auth login` (there is deliberately no --token flag, so it "
            "never lands in shell history)."
        ),
    )
    parser.add_argument("dir", type=Path, help="Folder with model_index.json (a saved pipeline).")
    parser.add_argument("--repo-id", "--hub_model_id", dest="repo_id", required=True, help="'user/model-name'.")
    parser.add_argument(
        "--private", "--hub_private_repo", dest="private", action="store_true", help="Create the repo as private."
    )
    parser.add_argument("--commit-message", default=None)
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="Seconds without progress before a request fails (default 120)."
    )
    parser.add_argument(
        "--card-json",
        type=Path,
        default=None,
        help="JSON file of ExplanationCardData fields (faithfulness, sanity_checks, memorization, eval_results, "
        "training, explainers, reproduce, ...), merged over DIR's explanations/summary.json.",
    )
    parser.add_argument(
        "--figures-dir", type=Path, default=None, help="Add every PNG in this folder as a figure named by its stem."
    )
    parser.add_argument(
        "--no-community-pipeline",
        dest="community_pipeline",
        action="store_false",
        help="Do not upload the community pipeline file (stock DiffusionPipeline custom_pipeline= loading).",
    )
    parser.set_defaults(func=run)


def _card_from_args(args: argparse.Namespace):
    from ..hub import SUMMARY_PATH, ExplanationCardData, load_explanation_card_data

    if args.card_json is None and args.figures_dir is None:
        return None
    base = load_explanation_card_data(args.dir) if (args.dir / SUMMARY_PATH).is_file() else ExplanationCardData()
    updates = {}
    if args.card_json is not None:
        if not args.card_json.is_file():
            raise ValueError(f"--card-json {args.card_json} does not exist.")
        updates = json.loads(args.card_json.read_text())
        ExplanationCardData.from_dict(updates)  # names unknown fields
    if args.figures_dir is not None:
        if not args.figures_dir.is_dir():
            raise ValueError(f"--figures-dir {args.figures_dir} is not a directory.")
        pngs = sorted(args.figures_dir.glob("*.png"))
        if not pngs:
            raise ValueError(f"--figures-dir {args.figures_dir} contains no .png files.")
        updates["figures"] = {**base.figures, **updates.get("figures", {}), **{p.stem: p for p in pngs}}
    return dataclasses.replace(base, **updates)


def run(args: argparse.Namespace) -> int:
    from ..hub import publish

    # errors (a bad card, a refused or failed push) become one line with exit code 2 in `cli.main`
    info = publish(
        args.dir,
        args.repo_id,
        _card_from_args(args),
        private=args.private or None,
        commit_message=args.commit_message,
        timeout=args.timeout,
        community_pipeline=args.community_pipeline,
    )
    print(f"Pushed {args.dir} to {info.commit_url}")
    return 0

"""The one door from training to the Hub: before training, check a push can happen; after it, push the run."""

from __future__ import annotations

import os

__all__ = ["check_push", "push_run"]


def check_push(config, need_token: bool = False) -> None:
    """
    With `push_to_hub`, refuse now what would fail after hours of training: an invalid `hub_model_id` (checked when
    the config is built) and, with `need_token=True` (at the start of `train`), a missing token (HF_TOKEN or the
    `hf auth login` cache; never a config key).
    """
    if not config.push_to_hub:
        return
    from ..hub.publish import check_repo_id, resolve_token

    if config.hub_model_id is not None:
        check_repo_id(config.hub_model_id)
    if need_token:
        resolve_token(None)


def push_run(config) -> str:
    """Push `output_dir` (the saved pipeline, its card and figures, not the checkpoints) as `hub_model_id` (default:
    the folder's name) in one commit; returns the commit URL."""
    from ..hub import publish

    repo_id = config.hub_model_id or os.path.basename(os.path.abspath(config.output_dir))
    return publish(config.output_dir, repo_id, private=config.hub_private_repo or None).commit_url

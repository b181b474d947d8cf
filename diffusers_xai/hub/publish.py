"""Publishing: save a pipeline with its explanation card, then push the folder to the Hub in one commit.

`publish()` is a helper rather than a `push_to_hub` override so it works for every pipeline class (images, tables,
time series) without touching them. The local folder is complete before the first network call, and a failed push
never deletes or rewrites it: retrying is `diffusers-xai push DIR --repo-id ...`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, get_token
from huggingface_hub.utils import HFValidationError, get_session, validate_repo_id

from ..utils.io import atomic_write
from .card import (
    SUMMARY_PATH,
    ExplanationCardData,
    load_explanation_card_data,
    save_explanation_card,
)
from .files import check_save_directory, upload_allow_list

try:  # the HTTP library huggingface_hub uses: httpx2 in 2.x, httpx in 1.x
    import httpx2 as _httpx
except ImportError:  # pragma: no cover
    import httpx as _httpx

__all__ = [
    "COMMUNITY_PIPELINES",
    "HubPushError",
    "check_repo_id",
    "community_pipeline_file",
    "publish",
    "resolve_token",
    "save_pretrained_with_card",
]

logger = logging.getLogger(__name__)

# pipeline class name -> community pipeline file shipped in `diffusers_xai/hub/community/`
COMMUNITY_PIPELINES = {"DiffusionXAIPipeline": "diffusion_xai.py"}


class HubPushError(RuntimeError):
    """
    Pushing to the Hub failed (server error, timeout, permissions). `local_dir` is the complete local copy, which
    was not modified: push it again with `diffusers-xai push <local_dir> --repo-id <repo_id>`.
    """

    def __init__(self, message: str, repo_id: str, local_dir: Path | None):
        super().__init__(message)
        self.repo_id = repo_id
        self.local_dir = local_dir


def community_pipeline_file(pipeline_class: str) -> Path | None:
    """Path of the community pipeline file for a pipeline class name, or `None` if there is none."""
    name = COMMUNITY_PIPELINES.get(pipeline_class)
    if name is None:
        return None
    return Path(str(resources.files("diffusers_xai.hub.community").joinpath(name)))


def check_repo_id(repo_id) -> str:
    """`repo_id` if it is a valid Hub repo id, else a `ValueError`/`TypeError` saying what a valid one looks like."""
    if not isinstance(repo_id, str):
        raise TypeError(f"repo_id must be a string like 'username/model-name', got {type(repo_id).__name__}.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(
            f"Invalid repo_id {repo_id!r}: {err} Use 'username/model-name' (letters, digits, '-', '_', '.'; at most "
            "96 characters)."
        ) from err
    return repo_id


def resolve_token(token: str | None) -> str:
    """`token`, else `HF_TOKEN` / the `hf auth login` cache; a `ValueError` saying how to log in when there is none."""
    # The token is only ever passed to huggingface_hub; never logged, printed or written anywhere.
    token = token if token is not None else get_token()
    if not token:
        raise ValueError(
            "No Hugging Face token found: set the HF_TOKEN environment variable or run `hf auth login` (a token with "
            "write access is needed to push)."
        )
    return token


@contextmanager
def _session_timeout(timeout: float | None) -> Iterator[None]:
    """
    Bound every read/write/connect of huggingface_hub's shared HTTP client by `timeout` seconds, for the duration of
    the push. huggingface_hub sends API calls without a timeout (its client default is `None`), so a stalled server
    would otherwise hang the push forever; there is no per-call option, hence this scoped change of the session.
    """
    if timeout is None:
        yield
        return
    session = get_session()
    previous = session.timeout
    session.timeout = _httpx.Timeout(timeout)
    try:
        yield
    finally:
        session.timeout = previous


def save_pretrained_with_card(
    pipeline,
    save_directory: str | os.PathLike,
    card: ExplanationCardData | dict | None = None,
    *,
    repo_id: str | None = None,
    community_pipeline: bool | str | os.PathLike = True,
) -> Path:
    """
    `pipeline.save_pretrained(save_directory)` plus the explanation card, its figures and summary, and the community
    pipeline file: the folder [`publish`] uploads.

    Everything is written to a temporary sibling folder first and moved into place at the end with renames, so an
    error while saving (a bad figure path, a full disk) leaves `save_directory` as it was. Files in an existing
    `save_directory` that the save does not produce (e.g. training `checkpoint-*` folders) are kept.

    Args:
        pipeline (`DiffusionPipeline`): the pipeline to save.
        save_directory (`str` or `os.PathLike`): target folder.
        card ([`ExplanationCardData`] or `dict`, *optional*): what the card shows.
        repo_id (`str`, *optional*): the Hub id used in the card's "how to load" snippet.
        community_pipeline (`bool` or path, *optional*, defaults to `True`): `True` ships the community file that
            matches the pipeline class (see `COMMUNITY_PIPELINES`), a path ships that file, `False` ships none.

    Returns:
        `Path`: `save_directory`.
    """
    if not hasattr(pipeline, "save_pretrained"):
        raise TypeError(f"pipeline must be a DiffusionPipeline, got {type(pipeline).__name__}.")
    save_directory = check_save_directory(save_directory)
    community = _community_source(type(pipeline).__name__, community_pipeline)
    save_directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=save_directory.parent, prefix=f".{save_directory.name}.staging-"))
    try:
        pipeline.save_pretrained(staging)
        if community is not None:
            atomic_write(staging / community.name, community.read_bytes())
        save_explanation_card(
            staging, pipeline, card, repo_id=repo_id, community_file=community.stem if community else None
        )
        _swap_into_place(staging, save_directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return save_directory


def _community_source(pipeline_class: str, community_pipeline) -> Path | None:
    if community_pipeline is False or community_pipeline is None:
        return None
    if community_pipeline is True:
        path = community_pipeline_file(pipeline_class)
        if path is None:
            logger.info(f"No community pipeline file for {pipeline_class}; the repo loads with {pipeline_class} only.")
        return path
    path = Path(community_pipeline)
    if not path.is_file() or path.suffix != ".py":
        raise ValueError(f"community_pipeline={path} is not an existing .py file; pass True, False or a .py path.")
    return path


def _swap_into_place(staging: Path, target: Path) -> None:
    """
    Move the save in `staging` into `target` with renames only. A new `target` appears in one `os.replace`; in an
    existing one each top-level entry of the save (`unet/`, `README.md`, `explanations/`, ...) replaces its old
    version (renamed aside until the new one is in place, restored if a later move fails), and entries the save did
    not produce (training `checkpoint-*` folders, logs) are kept, as `save_pretrained` into an existing folder does.
    """
    if not target.exists():
        os.replace(staging, target)
        return
    backup = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    done: list[tuple[str, bool]] = []  # (entry, had an old version)
    try:
        for entry in sorted(p.name for p in staging.iterdir()):
            had_old = (target / entry).exists()
            if had_old:
                os.replace(target / entry, backup / entry)
            done.append((entry, had_old))
            os.replace(staging / entry, target / entry)
    except BaseException:
        for entry, had_old in reversed(done):
            new = target / entry
            if not (staging / entry).exists() and (new.exists() or new.is_symlink()):  # the new version moved in
                shutil.rmtree(new) if new.is_dir() else new.unlink()
            if had_old:
                os.replace(backup / entry, new)
        raise
    finally:
        shutil.rmtree(backup, ignore_errors=True)


def _pipeline_class_name(folder: Path) -> str:
    class_name = json.loads((folder / "model_index.json").read_text())["_class_name"]
    return class_name[-1] if isinstance(class_name, list) else class_name


def _prepare_folder(folder: Path, card, repo_id: str, community_pipeline) -> str | None:
    """Check a saved pipeline folder and add what is missing (card, community file) before pushing it; returns the
    community file's name (or `None`)."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ValueError(
            f"{folder} is not a saved pipeline (no model_index.json); save it with `pipeline.save_pretrained` or "
            "`save_pretrained_with_card` first."
        )
    community = _community_source(_pipeline_class_name(folder), community_pipeline)
    if community is not None and not (folder / community.name).is_file():
        atomic_write(folder / community.name, community.read_bytes())
    summary = folder / SUMMARY_PATH
    if card is None and summary.is_file() and json.loads(summary.read_text()).get("repo_id") != repo_id:
        card = load_explanation_card_data(folder)  # our card, written for another repo id: re-render its snippets
    if card is not None or not (folder / "README.md").is_file():
        community_stem = community.stem if community is not None else None
        save_explanation_card(folder, None, card, repo_id=repo_id, community_file=community_stem)
    return community.name if community is not None else None


def publish(
    pipeline,
    repo_id: str,
    card: ExplanationCardData | dict | None = None,
    *,
    save_directory: str | os.PathLike | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    timeout: float | None = 120.0,
    community_pipeline: bool | str | os.PathLike = True,
) -> CommitInfo:
    """
    Save a pipeline with its explanation card and push it to the Hub in a single commit.

    The repo gets the `save_pretrained` files, `README.md` (the explanation card, validated by the Hub),
    `explanations/*.png`, `explanations/summary.json`, `samples/grid.png` when given, and the community pipeline
    file, so both `DiffusionXAIPipeline.from_pretrained(repo_id)` and
    `DiffusionPipeline.from_pretrained(repo_id, custom_pipeline="diffusion_xai", trust_remote_code=True)` load it.

    Args:
        pipeline (`DiffusionPipeline`, `str` or `os.PathLike`): a pipeline, or a folder it was saved to (only an
            allow-list is pushed: the pipeline's configs and safetensors, the card with the figures and summary it
            names, `training_config.yaml`, `evaluation/report.json` and the community file, each resolved inside
            the folder; never `checkpoint-*` folders, pickles or other files; the card is (re)written into it first
            if it has none, if `card` is given, or if it is our card written for another repo id).
        repo_id (`str`): `"username/model-name"` (or `"model-name"` in your own namespace).
        card ([`ExplanationCardData`] or `dict`, *optional*): what the card shows.
        save_directory (`str` or `os.PathLike`, *optional*): also keep the pushed folder here. Without it a
            temporary folder is used, deleted after a successful push and kept (and named in the error) after a
            failed one.
        private (`bool`, *optional*): create the repo as private (ignored if it exists).
        token (`str`, *optional*): defaults to `HF_TOKEN` or the `hf auth login` cache. Never logged or written.
        commit_message (`str`, *optional*): defaults to `"Upload <PipelineClass> with explanation card"`.
        timeout (`float`, *optional*, defaults to 120): seconds without progress before a request fails; `None`
            waits forever. huggingface_hub retries pre-upload calls on 5xx and timeouts with backoff; the commit
            itself is not retried (a retry could commit twice).
        community_pipeline (`bool` or path, *optional*, defaults to `True`): see [`save_pretrained_with_card`].

    Returns:
        `huggingface_hub.CommitInfo`: with `commit_url`, `oid` and `repo_url`.

    Raises:
        `ValueError`: invalid `repo_id`, no token, or an invalid card (before anything is written or pushed).
        [`HubPushError`]: the Hub could not be reached or refused the push; `err.local_dir` holds the saved folder.

    Example:

    ```py
    >>> from diffusers_xai.hub import ExplanationCardData, publish
    >>> card = ExplanationCardData(figures={"gradcam": "out/gradcam.png"}, faithfulness={"deletion_auc": 0.18})
    >>> publish(pipe, "me/digits-ddpm", card, save_directory="outputs/digits-ddpm").commit_url
    ```
    """
    repo_id = check_repo_id(repo_id)
    token = resolve_token(token)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}.")
    api = HfApi(token=token)
    with _session_timeout(timeout):
        if "/" not in repo_id:  # the card's "how to load" snippet needs the full id
            repo_id = _full_repo_id(api, repo_id, save_directory)
        local_dir, temporary, class_name, community_name = _stage(
            pipeline, card, repo_id, save_directory, community_pipeline
        )
        # only the allow-list, each file resolved inside the folder (checked before the repo is even created)
        allowed = upload_allow_list(local_dir, SUMMARY_PATH, (community_name,) if community_name else ())
        info = _commit(
            api, repo_id, local_dir, allowed, private, commit_message or f"Upload {class_name} with explanation card"
        )
    if temporary is not None:
        shutil.rmtree(temporary, ignore_errors=True)
    logger.info(f"Pushed {local_dir} to {info.commit_url}")
    return info


def _full_repo_id(api, repo_id: str, save_directory) -> str:
    """`"name"` → `"<your namespace>/name"` (asks the Hub who the token belongs to)."""
    try:
        return f"{api.whoami()['name']}/{repo_id}"
    except (_httpx.HTTPError, OSError) as err:
        raise HubPushError(
            f"Could not resolve the namespace of {repo_id!r} on {api.endpoint} ({err}); nothing was written. "
            "Pass a full 'username/model-name' repo_id.",
            repo_id,
            Path(save_directory) if save_directory else None,
        ) from err


def _stage(pipeline, card, repo_id: str, save_directory, community_pipeline):
    """The folder to push: a saved pipeline folder (card (re)written when needed), or `pipeline` saved with its card
    into `save_directory` or a temp folder. Returns `(folder, temp root or None, pipeline class, community file)`."""
    if isinstance(pipeline, (str, os.PathLike)):
        local_dir = Path(pipeline)
        community_name = _prepare_folder(local_dir, card, repo_id, community_pipeline)
        return local_dir, None, _pipeline_class_name(local_dir), community_name
    temporary = None
    if save_directory is None:
        temporary = Path(tempfile.mkdtemp(prefix="diffusers-xai-push-"))
        local_dir = temporary / repo_id.split("/")[-1]
    else:
        local_dir = Path(save_directory)
    try:
        save_pretrained_with_card(pipeline, local_dir, card, repo_id=repo_id, community_pipeline=community_pipeline)
    except BaseException:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
        raise
    class_name = type(pipeline).__name__
    community = _community_source(class_name, community_pipeline)
    return local_dir, temporary, class_name, community.name if community is not None else None


def _commit(api, repo_id: str, local_dir: Path, allowed, private, commit_message: str) -> CommitInfo:
    """Create the repo if needed and push `allowed` files of `local_dir` in one commit."""
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.create_commit(
            repo_id=repo_id,
            operations=[CommitOperationAdd(name, str(local_dir / name)) for name in allowed],
            commit_message=commit_message,
        )
    except (_httpx.HTTPError, OSError, RuntimeError, ValueError) as err:
        # HTTP errors and timeouts, LFS upload failures (RuntimeError), README metadata refused by the Hub
        # (ValueError): whatever happened, the local folder is intact and the push can be retried as is.
        raise HubPushError(
            f"Pushing {local_dir} to {repo_id!r} on {api.endpoint} failed: {type(err).__name__}: {err}\n"
            f"The local copy in {local_dir} is complete and was not modified; retry with "
            f"`diffusers-xai push {local_dir} --repo-id {repo_id}`.",
            repo_id,
            local_dir,
        ) from err

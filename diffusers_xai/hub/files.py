"""What a pushed folder may contain: paths resolved inside the folder, file types checked, an explicit allow-list.

A folder handed to `diffusers-xai push` may come from someone else, and its `explanations/summary.json` names the
figures the card shows. Without these checks a crafted summary (an absolute path, `..`, or a symlink leaving the
folder) would make the push copy any readable local file (an SSH key, the HF token cache) into the repo. So every
path read from the folder is resolved inside it, PNGs must be PNGs, and only the files listed by
[`upload_allow_list`] are uploaded, never "everything in the folder".
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path, PurePosixPath

__all__ = ["PNG_SIGNATURE", "check_png", "check_save_directory", "resolve_inside", "upload_allow_list"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# a pipeline component folder name (`unet`, `scheduler`, `denoiser`, ...): one plain path segment
_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# top-level files of a run folder the card links to (besides the pipeline, the card, its figures and summary)
RUN_FILES = ("training_config.yaml", "evaluation/report.json")
# files of a component folder that `from_pretrained` reads: configs and safetensors weights (never pickles)
COMPONENT_SUFFIXES = (".json", ".safetensors")


def resolve_inside(folder: str | os.PathLike, relative: str, what: str) -> Path:
    """
    `folder / relative`, after checking that `relative` is a relative POSIX path without `..` and that the result
    (following symlinks) stays inside `folder`; otherwise a `ValueError` naming `what` and the offending value.
    """
    if not isinstance(relative, str) or not relative:
        raise ValueError(f"{what} must be a relative path inside {folder}, got {relative!r}.")
    parts = PurePosixPath(relative).parts
    if relative.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relative) or "\\" in relative or ".." in parts:
        raise ValueError(
            f"{what} {relative!r} must be a relative path inside {folder} (no absolute path, no '..'); a folder "
            "that names files outside itself is refused."
        )
    root = Path(folder).resolve()
    path = Path(folder, *parts)
    if not path.resolve().is_relative_to(root):
        raise ValueError(
            f"{what} {relative!r} is a symlink that leaves {folder} (it points to a file outside the folder); "
            "replace it with the file itself."
        )
    return path


def check_save_directory(save_directory: str | os.PathLike) -> Path:
    """`save_directory` as a `Path` if it is a folder or does not exist yet, else a `ValueError` (it is a file)."""
    save_directory = Path(save_directory)
    if save_directory.exists() and not save_directory.is_dir():
        raise ValueError(f"save_directory {save_directory} exists and is not a directory.")
    return save_directory


def check_png(path: str | os.PathLike, what: str) -> Path:
    """`path` if it is an existing PNG file (by its signature, not only its name), else a `ValueError`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist; save the PNG first.")
    with open(path, "rb") as f:
        head = f.read(len(PNG_SIGNATURE))
    if path.suffix.lower() != ".png" or head != PNG_SIGNATURE:
        raise ValueError(f"{what} must be a PNG file, got {path.name} (not a PNG); save the figure as PNG.")
    return path


def _summary_files(folder: Path, summary_path: str) -> list[str]:
    """The figure and sample paths `summary.json` names, each checked to be a PNG inside `folder`."""
    summary_file = resolve_inside(folder, summary_path, "the summary")
    if not summary_file.is_file():
        return []
    try:
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{summary_file} is not valid JSON ({err}); rewrite it with save_explanation_card.") from err
    if not isinstance(summary, dict):
        raise ValueError(f"{summary_file} must hold a JSON object, got {type(summary).__name__}.")
    names = [summary_path]
    figures = summary.get("figures") or {}
    if not isinstance(figures, dict):
        raise ValueError(f"'figures' in {summary_file} must be an object of name -> {{path, caption}}.")
    entries = [(f"figure {name!r} in {summary_path}", spec) for name, spec in figures.items()]
    if summary.get("samples"):
        entries.append((f"'samples' in {summary_path}", {"path": summary["samples"]}))
    for what, spec in entries:
        relative = spec.get("path") if isinstance(spec, dict) else spec
        check_png(resolve_inside(folder, relative, what), what)
        names.append(str(PurePosixPath(relative)))
    return names


def upload_allow_list(folder: str | os.PathLike, summary_path: str, extra: tuple[str, ...] = ()) -> list[str]:
    """
    The repo paths a push of `folder` uploads: `model_index.json`, the `.json`/`.safetensors` files of each
    component it lists, `README.md`, the summary with the figures and sample grid it names (PNGs), the run's
    `training_config.yaml` and `evaluation/report.json`, and `extra` (the community pipeline file). Everything is
    resolved inside `folder`; nothing else (checkpoints, pickles, logs, hidden files) is ever uploaded.
    """
    folder = Path(folder)
    index = resolve_inside(folder, "model_index.json", "model_index.json")
    if not index.is_file():
        raise ValueError(f"{folder} is not a saved pipeline (no model_index.json).")
    names = ["model_index.json"]
    for component, spec in json.loads(index.read_text(encoding="utf-8")).items():
        if component.startswith("_") or not isinstance(spec, (list, tuple)) or spec[-1] is None:
            continue
        if not _COMPONENT.match(component):
            raise ValueError(f"model_index.json names a component {component!r}, which is not a plain folder name.")
        sub = resolve_inside(folder, component, f"component folder {component!r}")
        if sub.is_dir():
            for path in sorted(sub.iterdir()):
                if path.suffix in COMPONENT_SUFFIXES and not path.name.startswith("."):
                    relative = f"{component}/{path.name}"
                    if resolve_inside(folder, relative, "pipeline file").is_file():
                        names.append(relative)
    names += _summary_files(folder, summary_path)
    for relative in ("README.md", *RUN_FILES, *extra):
        if resolve_inside(folder, relative, "file").is_file():
            names.append(relative)
    return list(dict.fromkeys(names))

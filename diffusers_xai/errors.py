"""Bad input from the command line as one clear line (exit code 2) instead of a traceback.

[`user_error_message`] decides which exceptions are the user's to fix (a bad value, a typo'd Hub id, no network,
corrupt weights, a missing optional dependency, a failed push, a diverged run) and turns them into one line that
keeps the library's own message (which names the value) and adds the fix. Anything else is a bug and keeps its
traceback. `--debug` or `DIFFUSERS_XAI_DEBUG=1` shows the full traceback for every error.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

__all__ = ["DEBUG_ENV", "EXIT_BAD_INPUT", "report_user_errors", "uncached_hub_error", "user_error_message"]

DEBUG_ENV = "DIFFUSERS_XAI_DEBUG"
EXIT_BAD_INPUT = 2


def _debug_hint(prog: str) -> str:
    # `--debug` belongs to the top-level parser of the console script (`diffusers-xai --debug train ...`)
    name, _, command = prog.partition(" ")
    flag = f"`{name} --debug {command} ...`" if command else "--debug"
    return f" (for the traceback: {flag} or {DEBUG_ENV}=1)"


def uncached_hub_error(name_or_path: str, what: str, cause: BaseException) -> ConnectionError:
    """
    The error for a Hub id that is not a local folder and that could neither be downloaded nor found in the cache
    (offline, or no network): `what` is what was looked for ("it", "its unet/ config"), `cause` the loader's error.
    huggingface_hub's own text for it is a paragraph, and diffusers' names a file the repo may well have.
    """
    return ConnectionError(
        f"{name_or_path!r} is not a local folder, and {what} could neither be downloaded from the Hub nor found in "
        f"its cache ({type(cause).__name__})"
    )


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def _hub_message(err: BaseException) -> str | None:
    """huggingface_hub's errors, with what to do about each."""
    from huggingface_hub import errors as hf

    text = _one_line(err).split(" Please make sure")[0]
    if isinstance(err, hf.GatedRepoError):
        return f"{text} The repo is gated: accept its conditions on the Hub and log in (HF_TOKEN or `hf auth login`)."
    if isinstance(err, hf.RepositoryNotFoundError):
        return (
            f"{text} Check the repo id (`user/name`, case-sensitive) or pass a local folder; a private repo needs "
            "HF_TOKEN or `hf auth login`."
        )
    if isinstance(err, (hf.RevisionNotFoundError, hf.EntryNotFoundError)):
        return f"{text} Check the revision and file name, or pass a local folder written by `save_pretrained`."
    if isinstance(err, (hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError)):
        return (
            f"{text} The Hub could not be reached (offline or no network) and the file is not cached: pass a local "
            "folder, or connect and retry."
        )
    return None


def _network_error(err: BaseException) -> bool:
    try:  # huggingface_hub's HTTP client: httpx2 in 2.x, httpx in 1.x
        import httpx2 as httpx
    except ImportError:  # pragma: no cover
        import httpx
    return isinstance(err, (httpx.TransportError, ConnectionError, TimeoutError))


def user_error_message(err: BaseException) -> str | None:
    """
    One line for an error the user can fix (naming the value and the fix), or `None` for a bug (keep the traceback).
    """
    from safetensors import SafetensorError

    from .hub.publish import HubPushError
    from .training.trainer import NonFiniteLossError

    hub = _hub_message(err)
    if hub is not None:
        return hub
    if _network_error(err):
        return (
            f"Could not reach the Hugging Face Hub ({type(err).__name__}: {_one_line(err)}). Check the network (or "
            "HF_ENDPOINT), or pass a local folder and set HF_HUB_OFFLINE=1."
        )
    if isinstance(err, SafetensorError):
        return (
            f"Corrupt or unreadable weights ({_one_line(err)}): the .safetensors file is damaged or not a "
            "safetensors file; re-save it with `save_pretrained` or download it again."
        )
    from datasets.data_files import EmptyDatasetError

    if isinstance(err, EmptyDatasetError):  # a folder with no file `datasets` can read
        return f"{_one_line(err)}: put the images (or a CSV, Parquet or JSON table) in it, or pass another folder."
    if isinstance(err, (HubPushError, NonFiniteLossError)):
        return _one_line(err)
    if isinstance(err, ImportError):
        hint = "" if "pip install" in str(err) or not err.name else f" Install it: `pip install {err.name}`."
        return f"A missing optional dependency: {_one_line(err)}.{hint}"
    if isinstance(err, (ValueError, TypeError, OSError)):
        return _one_line(err)
    return None


def report_user_errors(prog: str, run: Callable[[], int], debug: bool = False) -> int:
    """
    `run()`, with errors the user can fix printed as `"{prog}: error: <one line>"` on stderr and exit code 2.
    Bugs (and everything with `debug` or `DIFFUSERS_XAI_DEBUG=1`) propagate with their traceback.
    """
    debug = debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return int(run() or 0)
    except Exception as err:
        message = None if debug else user_error_message(err)
        if message is None:
            raise
        print(f"{prog}: error: {message}{_debug_hint(prog)}", file=sys.stderr)
        return EXIT_BAD_INPUT

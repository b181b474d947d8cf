"""Test-only fault injection: kill the process inside a write window, to prove that resumes pick the last complete
state.

`DIFFUSERS_XAI_CRASH_AT=<point>[:<n>]` makes the n-th call (default the first) of `crash_point("<point>")` send
SIGKILL to its own process, exactly as an out-of-memory kill or a pre-empted machine would: no `finally`, no
cleanup. Points: `"checkpoint"` (checkpoint files written to `checkpoint-N.tmp`, not yet renamed) and `"shard"`
(a generation shard written to its temp file, not yet renamed). Unset, `crash_point` does nothing.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_ENV", "crash_point"]

CRASH_ENV = "DIFFUSERS_XAI_CRASH_AT"
_calls: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL this process if `DIFFUSERS_XAI_CRASH_AT` names `name` and this is the call it counts to."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _calls[name] = _calls.get(name, 0) + 1
    if _calls[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)

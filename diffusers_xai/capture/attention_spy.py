r"""Read the exact Q and K a joint-attention processor hands to SDPA or the attention dispatcher, without rebuilding.

SD3's `JointAttnProcessor2_0`/`FusedJointAttnProcessor2_0` call `F.scaled_dot_product_attention` and Flux's
`FluxAttnProcessor` calls `dispatch_attention_fn`, both looked up in their module's globals. [`spying_call`] returns a
copy of the processor's `__call__` (same code, same closure) whose globals see a pass-through spy under those two
names: it notes `(query, key, attn_mask, scale)` and calls the real function with the very same arguments, so the
output is computed by the same operations on the same tensors (bit-identical) while capture skips rebuilding the
projections, q/k norms and rotary embeddings. A processor whose code names neither function gets `None`, and capture
falls back to rebuilding Q and K (`attention_query_key`). The copy's globals are a snapshot taken when a capture
starts. The spy only notes calls made while [`seen_attention`] is
active in the calling thread; the real functions are looked up at call time, so other patches of them still apply.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

__all__ = ["SeenAttention", "seen_attention", "spying_call"]

_SPIED = ("F", "dispatch_attention_fn")
_active = threading.local()


@dataclass
class SeenAttention:
    """One attention-function call of a processor: its query and key as given, the mask and the scale."""

    query: torch.Tensor
    key: torch.Tensor
    mask: torch.Tensor | None
    scale: float | None


def _note(query, key, args, kwargs) -> None:
    seen = getattr(_active, "seen", None)
    if seen is None:
        return
    # both functions are (query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, ...)
    mask = kwargs.get("attn_mask", args[1] if len(args) > 1 else None)
    causal = kwargs.get("is_causal", args[3] if len(args) > 3 else False)
    scale = kwargs.get("scale", args[4] if len(args) > 4 else None)
    seen.append(None if causal else SeenAttention(query, key, mask, scale))


class _FunctionalSpy:
    """Stands for `torch.nn.functional` in a processor's globals; only `scaled_dot_product_attention` is noted."""

    def __getattr__(self, name: str):
        return getattr(torch.nn.functional, name)

    @staticmethod
    def scaled_dot_product_attention(query, key, *args, **kwargs):
        _note(query, key, args, kwargs)
        return torch.nn.functional.scaled_dot_product_attention(query, key, *args, **kwargs)


def _dispatch_spy(module_globals: dict) -> Callable:
    real_name = "dispatch_attention_fn"

    def dispatch_attention_fn(query, key, *args, **kwargs):
        _note(query, key, args, kwargs)
        return module_globals[real_name](query, key, *args, **kwargs)

    return dispatch_attention_fn


def spying_call(processor_cls: type) -> Callable | None:
    """A copy of `processor_cls.__call__` whose attention-function calls are noted, or `None` if it makes none.

    The copy's globals are a snapshot of the module's taken now (call it once per capture, not once per process, so
    later patches of the module's helpers are seen by the next capture).
    """
    fn = processor_cls.__call__
    if not isinstance(fn, types.FunctionType) or not any(n in fn.__code__.co_names for n in _SPIED):
        return None
    module_globals = fn.__globals__
    spied = dict(module_globals)
    if "F" in fn.__code__.co_names:
        if module_globals.get("F") is not torch.nn.functional:
            return None
        spied["F"] = _FunctionalSpy()
    if "dispatch_attention_fn" in fn.__code__.co_names:
        spied["dispatch_attention_fn"] = _dispatch_spy(module_globals)
    copy = types.FunctionType(fn.__code__, spied, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    return copy


@contextlib.contextmanager
def seen_attention() -> Iterator[list[SeenAttention | None]]:
    """Collect, in this thread, the attention-function calls of spying processors (`None` for a causal call)."""
    previous = getattr(_active, "seen", None)
    _active.seen = seen = []
    try:
        yield seen
    finally:
        _active.seen = previous

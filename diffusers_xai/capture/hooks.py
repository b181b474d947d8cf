"""Forward activations and their gradients for named modules, installed in a context manager."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import torch

__all__ = ["ActivationCapture", "resolve_module_names"]


def resolve_module_names(
    named: dict[str, torch.nn.Module] | Iterable[str], patterns: Iterable[str], what: str = "module"
) -> list[str]:
    """Expand exact dotted names and `fnmatch` patterns against the available names.

    Raises:
        ValueError: a name or pattern that matches nothing, listing what is available.
    """
    available = list(named)
    out: dict[str, None] = {}
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"Layer names must be strings, got {pattern!r} ({type(pattern).__name__}).")
        hits = [n for n in available if n == pattern] or fnmatch.filter(available, pattern)
        if not hits:
            preview = ", ".join(available[:12]) + (", ..." if len(available) > 12 else "")
            raise ValueError(
                f"The {what} name {pattern!r} matches nothing in this model. Use one of: {preview or '(none)'} "
                "(or a pattern such as 'down_blocks.*')."
            )
        out.update(dict.fromkeys(hits))
    return list(out)


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    sample = getattr(output, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    raise TypeError(f"Cannot capture an activation of type {type(output).__name__}: expected a tensor output.")


class ActivationCapture:
    r"""
    Capture the forward output of named modules (and, when they require grad, the gradient w.r.t. it).

    Installs forward hooks on enter and removes every hook in `finally` on exit, also after an exception.
    The captured tensors are *live* (not detached) so a caller can backpropagate through them, which is what
    GradCAM needs: `activations[name]` is $A^k$, `gradients[name]` is $\partial y / \partial A^k$.

    Example:

    ```py
    >>> with ActivationCapture(unet, ["mid_block"]) as cap:
    ...     out = unet(x, t).sample
    ...     out.sum().backward()
    >>> cap.activations["mid_block"].shape, cap.gradients["mid_block"].shape
    ```
    """

    def __init__(self, model: torch.nn.Module, layers: Iterable[str], on_activation=None):
        modules = dict(model.named_modules())
        self.names = resolve_module_names({k: v for k, v in modules.items() if k}, layers, what="layer")
        self.model = model
        self._modules = {n: modules[n] for n in self.names}
        self._handles: list = []
        self.on_activation = on_activation
        self.activations: dict[str, torch.Tensor] = {}
        self.gradients: dict[str, torch.Tensor] = {}

    def _hook(self, name: str):
        def hook(module, args, output):
            tensor = _first_tensor(output)
            self.activations[name] = tensor
            if tensor.requires_grad:
                self._handles.append(tensor.register_hook(lambda g: self.gradients.__setitem__(name, g)))
            if self.on_activation is not None:
                self.on_activation(name, tensor)

        return hook

    def __enter__(self) -> ActivationCapture:
        try:
            for name, module in self._modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __exit__(self, *exc) -> None:
        self.remove()

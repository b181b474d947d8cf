r"""Per-column explanations of generated table rows with the one explainer family: targets for a generated column
of $\hat{x}_0$, the targets x input-columns attribution matrix, and the step at which each column "commits"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..capture import Trace
from .base import ExplanationResult, step_trace
from .target import ExplanationTarget, class_embedding_module, x0_coefficients
from .trajectory import first_settled_steps, recorded_pred_x0

__all__ = [
    "ColumnCommitResult",
    "TabularExplanation",
    "column_attributions",
    "column_commit_steps",
    "column_target",
    "column_values",
]


@dataclass
class TabularExplanation:
    r"""
    What [`column_attributions`] returns: one [`ExplanationResult`] per generated (target) column, arranged as a
    matrix over the input columns.

    Args:
        method (`str`): the explainer's method name.
        columns (`list[str]`): the input columns (features of $x_t$ summed per column), in feature order.
        targets (`list[str]`): the explained generated columns.
        attributions (`torch.Tensor` `[K, B, T, n_columns]`): attribution of target column T to each input column
            of $x_t$, at K steps for B rows.
        feature_attributions (`torch.Tensor` `[K, B, T, num_features]`): the same before summing per column.
        timesteps (`list[int]`), step_indices (`list[int | None]`): the explained steps.
        condition (`torch.Tensor` `[K, B, T]`, *optional*): attribution to the class condition (its embedding
            against a zero embedding for IG, against every class's for SHAP), for conditional models.
        delta (`torch.Tensor` `[K, B, T]`, *optional*): IG's convergence delta, when requested.
        feature_names (`list[str]`): one name per model feature (`preprocessor.feature_names()`).
    """

    method: str
    columns: list[str]
    targets: list[str]
    attributions: torch.Tensor
    feature_attributions: torch.Tensor
    timesteps: list[int]
    step_indices: list[int | None]
    condition: torch.Tensor | None = None
    delta: torch.Tensor | None = None
    feature_names: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def matrix(self, step: int = -1) -> torch.Tensor:
        """Mean absolute attribution over rows at one explained step: `[T, n_columns]` (targets x inputs)."""
        return self.attributions[step].abs().mean(dim=0)


def column_values(x0: torch.Tensor, preprocessor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Model-space rows `[B, num_features]` → one scalar per column `[B, n_columns]` (see [`column_target`]).

    `reference` `[B, n_categorical]` holds the level index of each categorical column to score (default: the
    decoded level of `x0` itself)."""
    out = []
    for c in preprocessor.numerical:
        out.append(x0[:, preprocessor.feature_slices[c["name"]]][:, 0])
    for i, c in enumerate(preprocessor.categorical):
        block = x0[:, preprocessor.feature_slices[c["name"]]]
        codes = torch.as_tensor(preprocessor.codebooks[c["name"]], dtype=x0.dtype, device=x0.device)
        idx = reference[:, i] if reference is not None else (block @ codes.T).argmax(dim=1)
        out.append((block * codes[idx.long()]).sum(dim=1) / codes.shape[1])
    return torch.stack(out, dim=1)


def _decode_levels(x0: torch.Tensor, preprocessor) -> torch.Tensor:
    """Decoded level index of each categorical column, `[B, n_categorical]` (empty when there are none)."""
    idx = []
    for c in preprocessor.categorical:
        codes = torch.as_tensor(preprocessor.codebooks[c["name"]], dtype=x0.dtype, device=x0.device)
        idx.append((x0[:, preprocessor.feature_slices[c["name"]]] @ codes.T).argmax(dim=1))
    return torch.stack(idx, dim=1) if idx else torch.zeros(x0.shape[0], 0, dtype=torch.long, device=x0.device)


def column_target(
    preprocessor,
    column: str,
    output: Literal["model_contribution", "pred_original_sample", "model_output"] = "model_contribution",
) -> ExplanationTarget:
    r"""
    The [`ExplanationTarget`] of one generated column: a numerical column is its feature of the selected output
    (a mask over the row's features); a categorical column is the agreement $\langle y[\text{slice}], c_k \rangle / w$
    with the ±1 code $c_k$ of a reference level (the level the row ends up with), i.e. how strongly the model predicts
    that level. The reference levels `[B]` go to `attribute(..., target_inputs=levels)`.
    """
    names = [c["name"] for c in preprocessor.numerical + preprocessor.categorical]
    if column not in names:
        raise ValueError(f"Target columns [{column!r}] are not generated columns; choose from {names}.")
    sl = preprocessor.feature_slices[column]
    if column in [c["name"] for c in preprocessor.numerical]:
        mask = torch.zeros(preprocessor.num_features)
        mask[sl] = 1.0
        return ExplanationTarget(output=output, mask=mask)
    codes = torch.as_tensor(preprocessor.codebooks[column], dtype=torch.float32)

    def agreement(selected: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        code = codes.to(device=selected.device, dtype=selected.dtype)[levels.long().reshape(-1)]
        return (selected[:, sl] * code).sum(dim=1) / code.shape[1]

    return ExplanationTarget(output=output, fn=agreement)


def _targets(preprocessor, target) -> list[str]:
    names = [c["name"] for c in preprocessor.numerical + preprocessor.categorical]
    if target is None:
        return names
    wanted = [target] if isinstance(target, str) else list(target)
    bad = [n for n in wanted if n not in names]
    if bad:
        raise ValueError(f"Target columns {bad} are not generated columns; choose from {names}.")
    return wanted


def _reference_levels(explainer, inputs, step, cond: dict) -> torch.Tensor:
    """Level of each categorical column the row ends up with: from the trace's last x0, else x0(x_t, t)."""
    pre = explainer.preprocessor
    if isinstance(inputs, Trace):
        final = next(
            (s.pred_original_sample for s in reversed(inputs.steps) if s.pred_original_sample is not None), None
        )
        if final is not None:
            return _decode_levels(final.to(explainer.device, explainer.dtype), pre)
    forward = explainer.forward_function(ExplanationTarget(output="model_output"))  # guided if the explainer is
    with torch.no_grad():
        out = forward.model_output(step.sample, step.timestep, **cond)
    a, b = x0_coefficients(explainer.scheduler, step.timestep)
    return _decode_levels(a * step.sample + b * out, pre)


def column_attributions(
    explainer,
    inputs,
    target: str | Sequence[str] | None = None,
    timesteps: int | Sequence[int] | None = None,
    class_labels: torch.Tensor | None = None,
    output: Literal["model_contribution", "pred_original_sample", "model_output"] = "model_contribution",
    include_conditioning: bool | None = None,
    **attribute_kwargs,
) -> TabularExplanation:
    r"""
    Attribute each generated column ([`column_target`]) to the columns of the noisy row $x_t$ (and to the class
    condition), at chosen steps of a [`TabularXAIPipeline`] run, with any explainer of the family: one
    `explainer.attribute()` call per step and target column, the feature attributions summed per input column.

    Args:
        explainer ([`DenoiserAttribution`] or [`DenoiserShap`]): bound to a table pipeline (its preprocessor).
        inputs ([`Trace`] or `torch.Tensor` `[B, num_features]`): a trace (its recorded $x_t$) or $x_t$.
        target (`str` or `list[str]`, *optional*): generated columns to explain; `None` = all of them.
        timesteps (`int` or `list[int]`, *optional*): which steps; `None` = every recorded step of a trace.
        class_labels (`torch.Tensor` `[B]`, *optional*): the labels used to sample (required for conditional models).
        output (*optional*, defaults to `"model_contribution"`): what of the model the column target reads.
        include_conditioning (`bool`, *optional*): attribute to the class embedding too (default: when the model
            is class-conditional).
        **attribute_kwargs: passed to `explainer.attribute` (`n_steps=`, `nsamples=`, `return_convergence_delta=`).

    Example:

    ```py
    >>> out = pipe(num_rows=64, num_inference_steps=50, trace=True, class_labels=[1])
    >>> expl = column_attributions(DenoiserAttribution(pipe), out.trace, timesteps=[int(out.trace.timesteps[-10])],
    ...                            class_labels=out.class_labels)
    >>> expl.matrix().shape  # [targets, input columns]
    ```
    """
    pre = explainer.preprocessor
    if pre is None or not hasattr(pre, "feature_slices"):
        raise ValueError(
            f"column_attributions needs an explainer bound to a TabularXAIPipeline (with a fitted preprocessor), "
            f"got one bound to {type(explainer.unet).__name__} without it: pass the pipeline to the explainer."
        )
    if attribute_kwargs.get("return_convergence_delta") and explainer.method != "integrated_gradients":
        raise ValueError("`return_convergence_delta` is only available for method='integrated_gradients'.")
    targets = _targets(pre, target)
    if include_conditioning is None:
        include_conditioning = class_embedding_module(explainer.unet) is not None
    steps = explainer._steps(inputs, timesteps, ExplanationTarget())
    categorical = [c["name"] for c in pre.categorical]
    feats, conds, deltas = [], [], []
    for step in steps:
        cond = explainer._conditioning(None, class_labels, step.sample.shape[0])
        levels = _reference_levels(explainer, inputs, step, cond) if categorical else None
        per = [
            _attribute_column(explainer, step, pre, name, output, class_labels, levels, include_conditioning,
                              attribute_kwargs)
            for name in targets
        ]  # fmt: skip
        feats.append(torch.stack([r[0] for r in per], dim=1))
        conds.append(torch.stack([r[1] for r in per], dim=1) if per[0][1] is not None else None)
        deltas.append(torch.stack([r[2] for r in per], dim=1) if per[0][2] is not None else None)
    feature_attr = torch.stack(feats)  # [K, B, T, D]
    columns = [c["name"] for c in pre.numerical + pre.categorical]
    column_attr = torch.stack([_column_sum(feature_attr, pre, c) for c in columns], dim=-1)
    return TabularExplanation(
        method=explainer.method,
        columns=columns,
        targets=targets,
        attributions=column_attr,
        feature_attributions=feature_attr,
        timesteps=[s.timestep for s in steps],
        step_indices=[s.step_index for s in steps],
        condition=torch.stack(conds) if conds[0] is not None else None,
        delta=torch.stack(deltas) if deltas[0] is not None else None,
        feature_names=list(pre.feature_names()),
        metadata={"output": output},
    )


def _attribute_column(explainer, step, pre, name, output, class_labels, levels, include_conditioning, kwargs):
    """`(feature attributions [B, D], condition [B] or None, delta [B] or None)` of one target column at one step."""
    categorical = [c["name"] for c in pre.categorical]
    target_inputs = levels[:, categorical.index(name)] if name in categorical else None
    result: ExplanationResult = explainer.attribute(
        step_trace(step.sample, step.timestep, step.step_index),
        timesteps=[step.timestep],
        target=column_target(pre, name, output),
        class_labels=class_labels,
        target_inputs=target_inputs,
        include_conditioning=include_conditioning,
        **kwargs,
    )
    attr = result.attributions[0] if isinstance(result.attributions, tuple) else result.attributions
    cond = result.metadata.get("conditioning_scores")
    delta = result.delta[0] if result.delta is not None else None
    return attr[0], (cond[0] if cond is not None else None), delta


def _column_sum(feature_attr: torch.Tensor, pre, column: str) -> torch.Tensor:
    """A column's attribution: the sum over its model features (a date's season features included)."""
    return sum(feature_attr[..., sl].sum(-1) for sl in pre.column_slices(column))


# ---- trajectory: when does each column commit? ----
@dataclass
class ColumnCommitResult:
    r"""
    What [`column_commit_steps`] returns.

    Args:
        columns (`list[str]`): generated columns.
        step_indices (`torch.Tensor` `[B, n_columns]`): loop index of the first recorded step from which the
            column's decoded value of $\hat{x}_0$ stays at its final value (within `tolerance` for numericals).
        fraction (`torch.Tensor` `[B, n_columns]`): the same as a fraction of the run (0 = at the first step).
        trajectories (`torch.Tensor` `[S, B, n_columns]`): the per-column value of $\hat{x}_0$ at each recorded step
            (quantile-normal value or decoded level index).
        recorded_steps (`list[int]`): loop indices of the S recorded steps.
    """

    columns: list[str]
    step_indices: torch.Tensor
    fraction: torch.Tensor
    trajectories: torch.Tensor
    recorded_steps: list[int]

    def order(self) -> list[str]:
        """Columns sorted by mean commit fraction, earliest first."""
        means = self.fraction.float().mean(dim=0)
        return [self.columns[i] for i in torch.argsort(means, stable=True).tolist()]


def column_commit_steps(trace: Trace, preprocessor, tolerance: float = 0.1) -> ColumnCommitResult:
    r"""
    The step at which each generated column commits along the trajectory of $\hat{x}_0$.

    A numerical column has committed at the first recorded step after which its quantile-normal value stays within
    `tolerance` (in standard-normal units) of its final value; a categorical column at the first step after which
    its decoded level never changes again. Needs a trace with `pred_original_sample` (the default `TraceConfig`).
    """
    x0, recorded = recorded_pred_x0(trace, tolerance)  # [S, B, D]
    if x0.shape[-1] != preprocessor.num_features:
        raise ValueError(
            f"The trace has {x0.shape[-1]} features per row but the preprocessor {preprocessor.num_features}; "
            "use the preprocessor of the pipeline that produced the trace."
        )
    n_num = len(preprocessor.numerical)
    num = x0[..., :n_num]
    levels = torch.stack([_decode_levels(x, preprocessor) for x in x0]).float()  # [S, B, n_cat]
    traj = torch.cat([num, levels], dim=-1)
    final = traj[-1:]
    settled = torch.cat([(num - final[..., :n_num]).abs() <= tolerance, levels == final[..., n_num:]], dim=-1)
    step_idx, fraction = first_settled_steps(settled, recorded, trace.num_inference_steps)
    columns = [c["name"] for c in preprocessor.numerical + preprocessor.categorical]
    return ColumnCommitResult(columns, step_idx, fraction, traj, recorded)

r"""Per-column explanations of generated table rows: attributions of each generated column to the noisy input
columns (and the condition), and the step at which each column "commits" along the trajectory; plus plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..capture import Trace
from ..pipelines.schedulers import predict_original_sample
from ..viz._io import new_figure, save_figure
from .base import frozen_parameters, recorded_inputs
from .trajectory import first_settled_steps, recorded_pred_x0

__all__ = [
    "ColumnCommitResult",
    "TabularAttribution",
    "TabularExplanation",
    "column_commit_steps",
    "plot_column_attributions",
    "plot_column_commit_steps",
]

TabularMethod = Literal["integrated_gradients", "shap"]


@dataclass
class TabularExplanation:
    r"""
    What [`TabularAttribution.attribute`] returns.

    Args:
        method (`str`): `"integrated_gradients"` or `"shap"`.
        columns (`list[str]`): the input columns (features of $x_t$ summed per column), in feature order.
        targets (`list[str]`): the explained generated columns.
        attributions (`torch.Tensor` `[K, B, T, n_columns]`): attribution of target column T to each input column
            of $x_t$, at K steps for B rows.
        feature_attributions (`torch.Tensor` `[K, B, T, num_features]`): the same before summing per column.
        condition (`torch.Tensor` `[K, B, T]`, *optional*): attribution to the class condition (its embedding
            against a zero embedding), for conditional models.
        timesteps (`list[int]`), step_indices (`list[int | None]`): the explained steps.
        delta (`torch.Tensor` `[K, B, T]`, *optional*): IG's convergence delta, when requested.
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
    metadata: dict = field(default_factory=dict)

    def matrix(self, step: int = -1) -> torch.Tensor:
        """Mean absolute attribution over rows at one explained step: `[T, n_columns]` (targets x inputs)."""
        return self.attributions[step].abs().mean(dim=0)


class _ColumnTargets(nn.Module):
    r"""$x_t \mapsto$ `[B, n_columns]`: each column of $\hat{x}_0(x_t, t)$ as one scalar.

    A numerical column is its quantile-normal value; a categorical column is the agreement
    $\langle \hat{x}_0[\text{slice}], c_k \rangle / w$ with the ±1 code $c_k$ of its reference level (the level the
    row ends up with), i.e. how strongly the model predicts that level."""

    def __init__(self, denoiser, scheduler, preprocessor, timestep: int):
        super().__init__()
        self.denoiser, self.scheduler, self.preprocessor, self.timestep = denoiser, scheduler, preprocessor, timestep

    def forward(self, x_t, class_embedding=None, class_labels=None, reference=None):
        kwargs = {}
        if class_labels is not None:
            kwargs["class_labels"] = class_labels
        handle = None
        if class_embedding is not None:  # replace e_y by the (differentiable) input vector for this pass
            module = self.denoiser.embedder.class_embedding
            handle = module.register_forward_hook(lambda mod, args, out: class_embedding.to(out.dtype))
        try:
            eps = self.denoiser(x_t, self.timestep, **kwargs).sample
        finally:
            if handle is not None:
                handle.remove()
        x0 = predict_original_sample(self.scheduler, eps, self.timestep, x_t)
        return column_values(x0, self.preprocessor, reference)


def column_values(x0: torch.Tensor, preprocessor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Model-space rows `[B, num_features]` → one scalar per column `[B, n_columns]` (see [`_ColumnTargets`]).

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


class TabularAttribution:
    r"""
    Attribute each generated column of $\hat{x}_0(x_t, t)$ to the columns of the noisy row $x_t$ (and to the class
    condition), at chosen denoising steps of a [`TabularXAIPipeline`] run.

    `method="integrated_gradients"` runs captum's `IntegratedGradients` from the baseline $x_t = 0$ (the mean of
    the noise) and, for conditional models, the zero class embedding ("no class"); attributions sum to
    $y(x_t, e_y) - y(0, 0)$ (check with `return_convergence_delta=True`). `method="shap"` runs shap's
    `GradientExplainer` (expected gradients, [Erion et al., 2021](https://arxiv.org/abs/1906.10670)) against a
    background of standard-normal rows (the marginal of $x_t$ near $t = T$) and the embeddings of the training
    classes. Feature attributions are summed over each column's features (one for a numerical column, K or
    ⌈log2 K⌉ for a categorical one).

    Sampling ran without gradients; `attribute()` enables them only for the explained forward passes.

    Args:
        pipeline ([`TabularXAIPipeline`]): gives the denoiser, the scheduler and the preprocessor.
        method (`"integrated_gradients"` or `"shap"`, *optional*, defaults to `"integrated_gradients"`).

    Example:

    ```py
    >>> out = pipe(num_rows=64, num_inference_steps=50, trace=True, class_labels=[1])
    >>> expl = TabularAttribution(pipe).attribute(out.trace, timesteps=[out.trace.timesteps[-10].item()],
    ...                                           class_labels=out.class_labels)
    >>> expl.matrix().shape  # [targets, input columns]
    >>> plot_column_attributions(expl, "attributions.png")
    ```
    """

    def __init__(self, pipeline, method: TabularMethod = "integrated_gradients"):
        if method not in ("integrated_gradients", "shap"):
            raise ValueError(f"`method` must be 'integrated_gradients' or 'shap', got {method!r}.")
        for name in ("denoiser", "scheduler", "preprocessor"):
            if getattr(pipeline, name, None) is None:
                raise TypeError(f"Expected a TabularXAIPipeline (with .{name}), got {type(pipeline).__name__}.")
        self.pipeline = pipeline
        self.method = method

    @property
    def columns(self) -> list[str]:
        pre = self.pipeline.preprocessor
        return [c["name"] for c in pre.numerical + pre.categorical]

    def _targets(self, target) -> list[int]:
        cols = self.columns
        if target is None:
            return list(range(len(cols)))
        names = [target] if isinstance(target, str) else list(target)
        bad = [n for n in names if n not in cols]
        if bad:
            raise ValueError(f"Target columns {bad} are not generated columns; choose from {cols}.")
        return [cols.index(n) for n in names]

    def _steps(self, inputs, timesteps) -> tuple[list[tuple[torch.Tensor, int, int | None]], torch.Tensor | None]:
        """`[(x_t, t, step_index)]` to explain, and the final x0 of the trace (for categorical reference levels)."""
        width = self.pipeline.preprocessor.num_features
        if isinstance(inputs, Trace):
            steps = recorded_inputs(inputs, timesteps)
            final = next(
                (s.pred_original_sample for s in reversed(inputs.steps) if s.pred_original_sample is not None), None
            )
            return steps, final
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"`inputs` must be a Trace or a tensor x_t [B, {width}], got {type(inputs).__name__}.")
        if inputs.ndim != 2 or inputs.shape[1] != width:
            raise ValueError(f"`inputs` x_t must have shape [B, {width}], got {tuple(inputs.shape)}.")
        if timesteps is None:
            raise ValueError("Explaining a tensor x_t needs `timesteps=` (the t of that x_t).")
        return [(inputs, int(t), None) for t in np.atleast_1d(timesteps)], None

    def attribute(
        self,
        inputs: Trace | torch.Tensor,
        timesteps: int | Sequence[int] | None = None,
        target: str | Sequence[str] | None = None,
        class_labels: torch.Tensor | None = None,
        n_steps: int = 32,
        nsamples: int = 64,
        return_convergence_delta: bool = False,
        seed: int = 0,
    ) -> TabularExplanation:
        r"""
        Args:
            inputs ([`Trace`] or `torch.Tensor` `[B, num_features]`): a trace of the run (its recorded $x_t$) or
                $x_t$.
            timesteps (`int` or `list[int]`, *optional*): which steps; `None` = every recorded step of a trace.
            target (`str` or `list[str]`, *optional*): generated columns to explain; `None` = all of them.
            class_labels (`torch.Tensor` `[B]`, *optional*): the class indices used to sample (`out.class_labels`);
                required for conditional models.
            n_steps (`int`, *optional*, defaults to 32): IG's Riemann steps.
            nsamples (`int`, *optional*, defaults to 64): shap's samples per row.
            return_convergence_delta (`bool`, *optional*, defaults to `False`): IG only.
            seed (`int`, *optional*, defaults to 0): shap's background and sampling seed.

        Returns:
            [`TabularExplanation`].
        """
        pipe = self.pipeline
        denoiser, pre = pipe.denoiser, pipe.preprocessor
        conditional = pre.condition is not None
        if conditional and class_labels is None:
            raise ValueError("This model is conditional: pass the `class_labels` used to sample (out.class_labels).")
        if not conditional and class_labels is not None:
            raise ValueError("`class_labels` were given but this model is unconditional.")
        if return_convergence_delta and self.method != "integrated_gradients":
            raise ValueError("`return_convergence_delta` is only available for method='integrated_gradients'.")
        steps, final = self._steps(inputs, timesteps)
        targets = self._targets(target)
        device, dtype = denoiser.device, denoiser.dtype
        feats, conds, deltas = [], [], []
        with frozen_parameters(denoiser):
            for x_t, t, _ in tqdm(steps, desc="attribute", leave=False, disable=len(steps) < 2):
                x_t = x_t.to(device=device, dtype=dtype)
                labels = None if class_labels is None else class_labels.to(device).long().reshape(-1)
                if labels is not None and labels.shape[0] != x_t.shape[0]:
                    raise ValueError(f"Got {labels.shape[0]} class labels for {x_t.shape[0]} rows.")
                ref_x0 = final.to(device=device, dtype=dtype) if final is not None else None
                forward = _ColumnTargets(denoiser, pipe.scheduler, pre, t)
                if ref_x0 is None:  # no trace: score the levels x_t currently predicts
                    with torch.no_grad():
                        kwargs = {"class_labels": labels} if labels is not None else {}
                        ref_x0 = predict_original_sample(pipe.scheduler, denoiser(x_t, t, **kwargs).sample, t, x_t)
                reference = _decode_levels(ref_x0, pre)
                with torch.enable_grad():
                    if self.method == "integrated_gradients":
                        f, c, d = self._integrated_gradients(forward, x_t, labels, reference, targets, n_steps)
                    else:
                        f, c, d = self._shap(forward, x_t, labels, reference, targets, nsamples, seed)
                feats.append(f)
                conds.append(c)
                deltas.append(d)
        feature_attr = torch.stack(feats)  # [K, B, T, D]
        column_attr = torch.stack(
            [feature_attr[..., pre.feature_slices[name]].sum(-1) for name in self.columns], dim=-1
        )
        return TabularExplanation(
            method=self.method,
            columns=self.columns,
            targets=[self.columns[j] for j in targets],
            attributions=column_attr,
            feature_attributions=feature_attr,
            timesteps=[t for _, t, _ in steps],
            step_indices=[i for _, _, i in steps],
            condition=torch.stack(conds) if conditional else None,
            delta=torch.stack(deltas) if return_convergence_delta else None,
        )

    def _integrated_gradients(self, forward, x_t, labels, reference, targets, n_steps):
        from captum.attr import IntegratedGradients

        ig = IntegratedGradients(forward)
        feats, conds, deltas = [], [], []
        for j in targets:
            if labels is not None:
                emb = forward.denoiser.embedder.class_embedding(labels).detach()
                attr, delta = ig.attribute(
                    (x_t, emb),
                    baselines=(torch.zeros_like(x_t), torch.zeros_like(emb)),
                    target=j,
                    additional_forward_args=(labels, reference),
                    n_steps=n_steps,
                    return_convergence_delta=True,
                )
                feats.append(attr[0])
                conds.append(attr[1].sum(dim=1))
            else:
                attr, delta = ig.attribute(
                    x_t,
                    baselines=torch.zeros_like(x_t),
                    target=j,
                    additional_forward_args=(None, None, reference),
                    n_steps=n_steps,
                    return_convergence_delta=True,
                )
                feats.append(attr)
            deltas.append(delta)
        cond = torch.stack(conds, dim=1).detach().cpu() if conds else None
        return torch.stack(feats, dim=1).detach().cpu(), cond, torch.stack(deltas, dim=1).detach().cpu()

    def _shap(self, forward, x_t, labels, reference, targets, nsamples, seed):
        import shap

        gen = torch.Generator().manual_seed(seed)
        background = torch.randn(max(nsamples, 16), x_t.shape[1], generator=gen).to(x_t)
        denoiser = forward.denoiser
        feats, conds = [], []
        for b in tqdm(range(x_t.shape[0]), desc="shap rows", leave=False, disable=x_t.shape[0] < 8):
            ref_b = reference[b : b + 1]
            if labels is not None:
                probs = self.pipeline.preprocessor.class_probabilities.float()
                bg_labels = torch.multinomial(probs, background.shape[0], replacement=True, generator=gen)
                bg_emb = denoiser.embedder.class_embedding(bg_labels.to(labels.device)).detach()
                model = _RowModel(forward, labels[b : b + 1], ref_b, targets, with_embedding=True)
                explainer = shap.GradientExplainer(model, [background, bg_emb])
                emb_b = denoiser.embedder.class_embedding(labels[b : b + 1]).detach()
                values = explainer.shap_values([x_t[b : b + 1], emb_b], nsamples=nsamples, rseed=seed)
                x_vals, e_vals = _shap_arrays(values, 2, len(targets))
                feats.append(x_vals[0])
                conds.append(e_vals[0].sum(axis=0))
            else:
                model = _RowModel(forward, None, ref_b, targets, with_embedding=False)
                explainer = shap.GradientExplainer(model, background)
                values = explainer.shap_values(x_t[b : b + 1], nsamples=nsamples, rseed=seed)
                feats.append(_shap_arrays(values, 1, len(targets))[0][0])
        feat = torch.from_numpy(np.stack(feats)).float().transpose(1, 2)  # [B, T, D]
        cond = torch.from_numpy(np.stack(conds)).float() if conds else None
        return feat, cond, None


class _RowModel(nn.Module):
    """One row's conditioning broadcast to shap's sample batches; outputs the target columns `[n, T]`."""

    def __init__(self, forward: _ColumnTargets, labels, reference, targets, with_embedding: bool):
        super().__init__()
        self.fwd, self.labels, self.reference, self.targets = forward, labels, reference, targets
        self.with_embedding = with_embedding

    def forward(self, x_t, class_embedding=None):
        n = x_t.shape[0]
        labels = None if self.labels is None else self.labels.expand(n)
        y = self.fwd(x_t, class_embedding if self.with_embedding else None, labels, self.reference.expand(n, -1))
        return y[:, self.targets]


def _shap_arrays(values, num_inputs: int, num_targets: int) -> list[np.ndarray]:
    """shap returns `[inputs][B, D, T]` arrays (recent versions) or `[targets][inputs][B, D]` lists (older)."""
    if num_inputs == 1 and isinstance(values, np.ndarray):
        values = [values]
    if isinstance(values, list) and len(values) == num_targets and num_targets > 1 and isinstance(values[0], list):
        return [np.stack([values[k][i] for k in range(num_targets)], axis=-1) for i in range(num_inputs)]
    arrays = [np.asarray(v) for v in values]
    return [a if a.ndim == 3 else a[..., None] for a in arrays]


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


# ---- plots (written with `viz`'s atomic `save_figure`, cropped to the content, at PLOT_DPI) ----
PLOT_DPI = 110


def plot_column_attributions(explanation: TabularExplanation, path: str, step: int = -1) -> str:
    """Heatmap of mean |attribution| (rows: generated columns, columns: input columns of $x_t$, plus the condition)
    at one explained step; saved as a PNG."""
    matrix = explanation.matrix(step).numpy()
    labels = list(explanation.columns)
    if explanation.condition is not None:
        matrix = np.concatenate([matrix, explanation.condition[step].abs().mean(dim=0).numpy()[:, None]], axis=1)
        labels.append("[condition]")
    fig = new_figure(0.45 * len(labels) + 2.5, 0.35 * len(explanation.targets) + 1.8)
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(explanation.targets)), explanation.targets, fontsize=7)
    ax.set_xlabel("input column of x_t")
    ax.set_ylabel("generated column of x̂0")
    ax.set_title(f"{explanation.method}, t = {explanation.timesteps[step]}", fontsize=9)
    fig.colorbar(im, ax=ax, label="mean |attribution|")
    save_figure(fig, path, tight=True, dpi=PLOT_DPI)
    return path


def plot_column_commit_steps(result: ColumnCommitResult, path: str) -> str:
    """Box plot of the commit fraction of each column over the rows (earliest-committing first); saved as a PNG."""
    order = result.order()
    data = [result.fraction[:, result.columns.index(c)].numpy() for c in order]
    fig = new_figure(6, 0.3 * len(order) + 1.5)
    ax = fig.subplots()
    ax.boxplot(data, vert=False, tick_labels=order, showfliers=False)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("commit step (fraction of the run)")
    ax.tick_params(labelsize=7)
    save_figure(fig, path, tight=True, dpi=PLOT_DPI)
    return path

"""Per-column explanations with the one explainer family: IG against hand-computed values on a linear denoiser,
completeness, the condition, commit steps, plots."""

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from diffusers_xai import Trace, TraceConfig, TraceStep
from diffusers_xai.explain import (
    DenoiserAttribution,
    DenoiserShap,
    ExplanationTarget,
    column_attributions,
    column_commit_steps,
    column_target,
)
from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline
from diffusers_xai.modalities.tabular.preprocessor import TabularPreprocessor
from diffusers_xai.testing import tiny_tabular_pipeline
from diffusers_xai.viz import plot_column_attributions, plot_column_commit_steps


def row_explainer(pipe, method="integrated_gradients"):
    """The table explainer of the one family: captum IG or shap's GradientExplainer over rows [B, F]."""
    return DenoiserShap(pipe) if method == "shap" else DenoiserAttribution(pipe, method)


def attribute(explainer, inputs, **kwargs):
    return column_attributions(explainer, inputs, **kwargs)


class LinearDenoiser(ModelMixin, ConfigMixin):
    """$\\epsilon_\\theta(x_t, t) = W x_t$ with fixed weights: IG is exact and hand-computable."""

    @register_to_config
    def __init__(self, in_features: int = 4):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(-0.5, 0.5, in_features**2).reshape(in_features, in_features))

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        return BaseOutput(sample=sample @ self.weight.T) if return_dict else (sample @ self.weight.T,)


def small_frame(n=60):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.gamma(2, size=n), "kind": rng.choice(["x", "y", "z"], n)})


def linear_pipeline():
    pre = TabularPreprocessor.fit(small_frame())
    scheduler = DDPMScheduler(num_train_timesteps=50, clip_sample=False)
    pipe = TabularXAIPipeline(LinearDenoiser(in_features=pre.num_features), scheduler, pre)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_integrated_gradients_match_hand_computed_values_on_a_linear_denoiser():
    pipe = linear_pipeline()
    pre, t = pipe.preprocessor, 30
    ab = pipe.scheduler.alphas_cumprod[t].double()
    w = pipe.denoiser.weight.detach().double()
    m = (torch.eye(5, dtype=torch.float64) - (1 - ab).sqrt() * w) / ab.sqrt()  # x0_hat = M x_t
    x = torch.tensor([[0.5, -1.0, 0.3, -0.2, 0.9], [-0.4, 0.2, -0.8, 0.6, 0.1]])
    explainer = row_explainer(pipe)
    expl = attribute(
        explainer, x, timesteps=t, output="pred_original_sample", n_steps=8, return_convergence_delta=True
    )
    assert expl.columns == ["a", "b", "kind"] and expl.targets == ["a", "b", "kind"]
    assert expl.feature_attributions.shape == (1, 2, 3, 5) and expl.attributions.shape == (1, 2, 3, 3)
    xd = x.double()
    # numerical targets: a_i = x_i * M[j, i]
    for j in range(2):
        torch.testing.assert_close(expl.feature_attributions[0, :, j].double(), xd * m[j], atol=1e-5, rtol=1e-4)
    # categorical target: the agreement <x0_hat[2:5], c_k> / 3 with the code c_k of the level x0_hat decodes to
    x0 = xd @ m.T
    codes = torch.as_tensor(pre.codebooks["kind"])
    level = (x0[:, 2:5] @ codes.T).argmax(dim=1)
    row_weights = (codes[level][:, :, None] * m[2:5][None]).sum(dim=1) / 3
    torch.testing.assert_close(expl.feature_attributions[0, :, 2].double(), xd * row_weights, atol=1e-5, rtol=1e-4)
    # per-column attributions sum the column's features; completeness holds exactly for a linear model
    torch.testing.assert_close(expl.attributions[0, :, :, 2], expl.feature_attributions[0, :, :, 2:5].sum(-1))
    assert expl.delta.abs().max() < 1e-5


@pytest.fixture(scope="module")
def wine_run():
    pipe, _ = tiny_tabular_pipeline()  # wine: 13 features, 3 cultivars
    out = pipe(num_rows=4, generator=torch.Generator().manual_seed(0), num_inference_steps=5, trace=True)
    return pipe, out


def test_conditional_attributions_from_a_trace_are_complete(wine_run):
    pipe, out = wine_run
    t = out.trace.steps[2].timestep
    expl = attribute(
        row_explainer(pipe),
        out.trace,
        timesteps=t,
        target=["alcohol", "proline"],
        class_labels=out.class_labels,
        n_steps=64,
        return_convergence_delta=True,
    )
    assert expl.timesteps == [t] and expl.step_indices == [2] and expl.targets == ["alcohol", "proline"]
    assert expl.attributions.shape == (1, 4, 2, 13) and expl.condition.shape == (1, 4, 2)
    assert expl.delta.abs().max() < 5e-3  # x_t and condition attributions sum to y(x_t, e_y) - y(0, 0)
    assert expl.matrix().shape == (2, 13)
    # an all-recorded-steps explanation stacks K = 5 steps
    assert attribute(
        row_explainer(pipe), out.trace, target="hue", class_labels=out.class_labels, n_steps=4
    ).attributions.shape == (5, 4, 1, 13)
    # hooks and requires_grad are restored
    assert not pipe.denoiser.embedder.class_embedding._forward_hooks
    assert all(p.requires_grad for p in pipe.denoiser.parameters())


def test_shap_attributions_agree_with_integrated_gradients_on_a_linear_denoiser():
    pipe = linear_pipeline()
    x = torch.tensor([[1.5, -1.0, 0.3, -0.2, 0.9]])
    ig = attribute(row_explainer(pipe), x, timesteps=30, target="a").feature_attributions[0, 0, 0]
    sh = attribute(row_explainer(pipe, method="shap"), x, timesteps=30, target="a", nsamples=200)
    assert sh.method == "shap" and sh.feature_attributions.shape == (1, 1, 1, 5)
    # expected gradients = M * (x - background mean): close to IG from 0 for a standard-normal background
    torch.testing.assert_close(sh.feature_attributions[0, 0, 0], ig, atol=0.35, rtol=0.2)


def test_shap_with_a_condition(wine_run):
    pipe, out = wine_run
    sh = attribute(
        row_explainer(pipe, method="shap"),
        out.trace,
        timesteps=out.trace.steps[1].timestep,
        target="alcohol",
        class_labels=out.class_labels,
        nsamples=16,
    )
    assert sh.attributions.shape == (1, 4, 1, 13) and sh.condition.shape == (1, 4, 1)
    assert torch.isfinite(sh.attributions).all()


def test_attribute_errors(wine_run):
    pipe, out = wine_run
    explainer = row_explainer(pipe)
    with pytest.raises(ValueError, match="pass the `class_labels` used to sample"):
        attribute(explainer, out.trace)
    with pytest.raises(ValueError, match=r"Target columns \['colour'\] are not generated columns"):
        attribute(explainer, out.trace, target="colour", class_labels=out.class_labels)
    with pytest.raises(ValueError, match=r"Timestep 3 is not in the schedule of this run"):
        attribute(explainer, out.trace, timesteps=3, class_labels=out.class_labels)
    with pytest.raises(ValueError, match=r"x_t must have shape \[B, 13\]"):
        attribute(explainer, torch.zeros(2, 5), timesteps=10, class_labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="only available for method='integrated_gradients'"):
        attribute(row_explainer(pipe, "shap"), out.trace, class_labels=out.class_labels, return_convergence_delta=True)
    with pytest.raises(ValueError, match="Unknown attribution method 'lime'"):
        row_explainer(pipe, "lime")
    # bad input of the one family on rows: a region mask of the wrong shape, a condition for an unconditional model
    with pytest.raises(
        ValueError, match=r"mask has shape \(5,\) but rows are \[B, 13\]; pass a mask of shape \(13,\)"
    ):
        DenoiserAttribution(pipe, target=ExplanationTarget(mask=torch.ones(5))).attribute(
            out.trace, class_labels=out.class_labels
        )
    with pytest.raises(ValueError, match="`class_labels` were given but LinearDenoiser is unconditional"):
        DenoiserAttribution(linear_pipeline()).attribute(torch.zeros(1, 5), timesteps=10, class_labels=torch.zeros(1))
    assert column_target(pipe.preprocessor, "alcohol").mask.tolist() == [1.0] + [0.0] * 12


def test_commit_steps_on_a_hand_made_trajectory():
    pre = TabularPreprocessor.fit(small_frame())
    # one row; columns a, b (numerical) and kind (one-hot x/y/z as ±1; levels x then y)
    x, y = [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0]
    x0s = [[0.0, 2.0, *x], [1.0, 2.0, *y], [1.05, 0.0, *y], [1.0, 2.0, *y]]
    steps = [TraceStep(i, 40 - 10 * i, pred_original_sample=torch.tensor([r])) for i, r in enumerate(x0s)]
    trace = Trace(config=TraceConfig(), steps=steps, num_inference_steps=4)
    result = column_commit_steps(trace, pre, tolerance=0.1)
    assert result.columns == ["a", "b", "kind"]
    assert result.step_indices.tolist() == [[1, 3, 1]]
    torch.testing.assert_close(result.fraction, torch.tensor([[1 / 3, 1.0, 1 / 3]]))
    assert result.order() == ["a", "kind", "b"] and result.trajectories.shape == (4, 1, 3)
    with pytest.raises(ValueError, match="trace has 4 features per row but the preprocessor 5"):
        column_commit_steps(Trace(TraceConfig(), [TraceStep(0, 1, pred_original_sample=torch.zeros(1, 4))]), pre)


def test_plots_are_written(tmp_path, wine_run):
    pipe, out = wine_run
    expl = attribute(
        row_explainer(pipe), out.trace, timesteps=out.trace.steps[-2].timestep, class_labels=out.class_labels,
        n_steps=4,
    )  # fmt: skip
    a = plot_column_attributions(expl, str(tmp_path / "attr.png"))
    b = plot_column_commit_steps(column_commit_steps(out.trace, pipe.preprocessor), str(tmp_path / "commit.png"))
    for path in (a, b):
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"

"""`bench/explain_tabular_question.py`: the Jacobian of the model's term, its diagonal shares, the planted design."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from diffusers_xai.explain import planted

from .repo_scripts import load_script


@pytest.fixture(scope="module")
def question():
    return load_script("bench/explain_tabular_question.py")


class _Linear(torch.nn.Module):
    """A denoiser whose epsilon prediction is W x_t (whatever the step and class)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = weight

    def forward(self, x, t, class_labels=None):
        return SimpleNamespace(sample=x @ self.weight.T)


def test_contribution_jacobian_of_a_linear_denoiser_is_b_t_times_w(question):
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    weight = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [0.5, 0.0, 1.0]])
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    jac = question.contribution_jacobian(_Linear(weight), scheduler, x, 500, None)
    alpha_bar = float(scheduler.alphas_cumprod[500])
    b_t = -((1 - alpha_bar) ** 0.5) / alpha_bar**0.5  # epsilon prediction: x0 = (x_t - sqrt(1 - a) eps) / sqrt(a)
    assert jac.shape == (4, 3, 3)
    torch.testing.assert_close(jac, (b_t * weight).expand(4, 3, 3))


def test_diagonal_shares_known_answers(question):
    # a diagonal Jacobian (all of |J| and of the summed gradient on the diagonal), and all ones: half of |J| on the
    # diagonal, and each column's off-diagonal sum equals its diagonal entry (half the gradient)
    jac = torch.stack([torch.diag(torch.tensor([-2.0, -2.0])), torch.ones(2, 2)])
    out = question.diagonal_shares(jac[:1])
    assert out == {"diag_share_of_|J|": 1.0, "mean_diag": -2.0, "gradient_share_from_diag": 1.0}
    out = question.diagonal_shares(jac[1:])
    assert out == {"diag_share_of_|J|": 0.5, "mean_diag": 1.0, "gradient_share_from_diag": 0.5}


def test_spread_design_sets_d_spread_by_class_and_keeps_the_rest(question):
    frame = planted.planted_table(6000, seed=0).frame
    spread = question.spread_design(frame)
    assert spread[["a", "b", "c", "y"]].equals(frame[["a", "b", "c", "y"]])
    for y, s in enumerate(question.SPREADS):
        d = spread.loc[spread["y"] == y, "d"].to_numpy()
        assert abs(d.mean() - 1.5 * (y - 1)) < 0.05
        assert abs(d.std() - s) < 0.03
    assert np.allclose(question.spread_design(frame.iloc[:0])["d"], [])

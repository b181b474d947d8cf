"""α-precision / β-recall (Alaa et al. 2022, synthcity's naive estimates) on tables with known answers."""

import numpy as np
import pandas as pd
import pytest

from diffusers_xai.evaluation.tabular_fidelity import alpha_precision_beta_recall, embed_rows


def table(n, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"a": rng.normal(shift, 1, n), "b": rng.normal(0, 2, n), "g": rng.choice(["x", "y", "z"], n).astype(object)}
    )


def test_embedding_is_range_scaled_numbers_and_one_hot_levels():
    real = pd.DataFrame({"a": [0.0, 2.0, 4.0], "g": ["x", "y", "x"]})
    synth = pd.DataFrame({"a": [1.0, np.nan], "g": ["y", "new"]})
    x, x_syn = embed_rows(real, synth, {"columns": {"a": {"sdtype": "numerical"}, "g": {"sdtype": "categorical"}}})
    np.testing.assert_array_equal(x, [[0, 0, 1, 0], [0.5, 0, 0, 1], [1, 0, 1, 0]])
    np.testing.assert_array_equal(x_syn, [[0.25, 0, 0, 1], [0.5, 1, 0, 0]])


def test_alpha_precision_beta_recall_known_answers():
    real = table(600, 0)
    same = alpha_precision_beta_recall(real, table(600, 1))
    # an independent sample of the same distribution: precision near 1; a real row's nearest synthetic row is closer
    # than its nearest real neighbour about half the time, so the naive β-recall is near 0.5
    assert same.alpha_precision > 0.9 and 0.4 < same.beta_recall < 0.65
    far = alpha_precision_beta_recall(real, table(600, 1, shift=25.0))
    assert far.alpha_precision == pytest.approx(0.0) and far.beta_recall == pytest.approx(0.0)
    collapsed = real.assign(a=0.0, b=0.0, g="x")  # mode collapse: every synthetic row at one point
    result = alpha_precision_beta_recall(real, collapsed)
    assert result.alpha_precision < 0.5 and result.beta_recall < 0.01
    copies = alpha_precision_beta_recall(real, real)
    assert copies.authenticity == 0.0 and copies.beta_recall > 0.95

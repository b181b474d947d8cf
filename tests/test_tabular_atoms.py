"""Point masses at a numerical column's bounds: found in the training rows, modelled by an indicator per bound and
written back at their training share (`tabular/atoms.py`)."""

import numpy as np
import pandas as pd
import pytest
import torch

from diffusers_xai.modalities.tabular import TabularPreprocessor
from diffusers_xai.modalities.tabular.atoms import bound_atoms
from diffusers_xai.modalities.tabular.data import load_breast_cancer_frame


def dosage(n=1000, seed=0) -> pd.DataFrame:
    """A dose in [0, 50] mg, one decimal: 2% of the patients got none, 1.5% the maximum (each less than one step of
    the 33-quantile grid); and a weight."""
    rng = np.random.default_rng(seed)
    dose = rng.uniform(0.1, 49.9, n).round(1)
    which = rng.permutation(n)
    dose[which[:20]], dose[which[20:35]] = 0.0, 50.0
    return pd.DataFrame({"dose": dose, "weight": rng.normal(70.0, 10.0, n).round(1)})


def noise(pre, n=20_000, seed=0) -> torch.Tensor:
    return torch.randn(n, pre.num_features, generator=torch.Generator().manual_seed(seed))


def test_bound_atoms_known_answers():
    rest = np.linspace(1.0, 2.0, 95)
    assert bound_atoms(np.r_[np.zeros(5), rest]) == [0.05, 0.0]
    assert bound_atoms(np.r_[np.zeros(5), rest, np.full(3, 2.0)]) == [5 / 103, 4 / 103]  # 2.0 is in rest too
    assert bound_atoms(np.r_[np.zeros(2), rest]) is None  # two rows on the bound: not a mass
    assert bound_atoms(np.r_[np.zeros(5), np.linspace(1.0, 2.0, 995)]) is None  # 0.5% of the rows
    assert bound_atoms(np.r_[np.zeros(95), rest[:5]]) is None  # too few other values to fit a grid on
    assert bound_atoms(np.r_[np.zeros(5), rest, np.full(4, 1.5)]) is None  # 1.5 as frequent: a grid, not a floor
    assert bound_atoms(np.r_[np.zeros(5), rest, np.full(3, 1.5)]) == [5 / 103, 0.0]  # 1.5 on 4 rows, 0.0 on 5


def test_the_lattice_benchs_draws_read_the_bounds_holding_a_share_of_the_rows():
    from tests.repo_scripts import load_script

    bench = load_script("bench/tabular_lattice.py")
    rows = pd.DataFrame(
        {
            "x": [0.0] * 10 + list(range(1, 191)),  # minimum on 5% of the rows; the maximum on one row of 200
            "z": [np.nan] * 100 + [3.0] + list(range(4, 103)),  # 1% of the values that are not missing, at each end
            "s": ["a"] * 200,
        }
    )
    assert bench.bounds_held(rows) == [("x", 0.0), ("z", 3.0), ("z", 102.0)]
    with pytest.raises(SystemExit):
        bench.parse_args(["--pipeline", "runs/x", "--draws", "0"])


def test_a_bound_is_an_indicator_and_round_trips():
    df = dosage()
    pre = TabularPreprocessor.fit(df)
    dose, weight = pre.numerical
    assert dose["atoms"] == [0.02, 0.015] and weight["atoms"] is None
    assert pre.feature_names() == ["dose", "weight", "dose=0", "dose=50"] and pre.num_features == 4
    x = pre.transform(df).numpy()
    on_low, on_high = (df.dose == 0.0).to_numpy(), (df.dose == 50.0).to_numpy()
    np.testing.assert_array_equal(x[:, 2], np.where(on_low, 1.0, -1.0))
    np.testing.assert_array_equal(x[:, 3], np.where(on_high, 1.0, -1.0))
    assert (x[on_low | on_high, 0] == 0.0).all()  # the column's own feature: its other values' median
    assert x[~(on_low | on_high), 0].min() < -2.0  # the other values span the whole normal, not squeezed
    pd.testing.assert_frame_equal(pre.inverse_transform(pre.transform(df)), df)
    assert [sl.start for sl in pre.column_slices("dose")] == [0, 2, 3] and pre.column_slices("weight") == [slice(1, 2)]


def test_calibrated_thresholds_give_the_training_shares():
    df = dosage()
    pre = TabularPreprocessor.fit(df)
    # uncalibrated (thresholds 0), a noise row is on a bound where either indicator is positive (3 in 4), on the one
    # further above 0 where both are
    rows = pre.inverse_transform(noise(pre))
    assert rows.dose.isin([0.0, 50.0]).mean() == pytest.approx(0.75, abs=0.01)
    assert (rows.dose == 0.0).mean() == pytest.approx(0.375, abs=0.01)
    thresholds = pre.calibrate_missingness(noise(pre, seed=1))
    assert set(thresholds) == {"dose:min", "dose:max"} and thresholds["dose:min"] > 1.9
    rows = pre.inverse_transform(noise(pre, seed=2))  # fresh rows
    assert (rows.dose == 0.0).mean() == pytest.approx(0.02, abs=0.004)
    assert (rows.dose == 50.0).mean() == pytest.approx(0.015, abs=0.004)
    inner = rows.dose[(rows.dose > 0.0) & (rows.dose < 50.0)]
    assert inner.min() >= 0.1 and inner.max() <= 49.9  # the other values keep their own range
    # noise-adding samplers get thresholds of their own, and inverse_transform(stochastic=True) reads them
    pre.calibrate_missingness(noise(pre, seed=3) * 0.5, stochastic=True)
    drawn = pre.inverse_transform(noise(pre, seed=4) * 0.5, stochastic=True)
    assert (drawn.dose == 0.0).mean() == pytest.approx(0.02, abs=0.004)
    assert (pre.inverse_transform(noise(pre, seed=4) * 0.5).dose == 0.0).mean() < 0.001  # the ODE thresholds


def test_breast_cancers_zero_concavities_get_one_indicator_each():
    df = load_breast_cancer_frame()
    pre = TabularPreprocessor.fit(df, derived_columns=False)  # no orders: each column decoded on its own
    concavities = [c["name"] for c in pre.bounded]
    assert len(concavities) == 6 and all("concav" in name for name in concavities)
    assert all(c["atoms"] == [13 / 569, 0.0] for c in pre.bounded)
    pre.calibrate_missingness(noise(pre, seed=1))
    shares = (pre.inverse_transform(noise(pre, seed=2))[concavities] == 0.0).mean()
    assert ((shares - 13 / 569).abs() < 0.004).all(), shares.to_dict()


def test_the_thresholds_survive_save_and_load(tmp_path):
    df = dosage()
    pre = TabularPreprocessor.fit(df)
    pre.calibrate_missingness(noise(pre, seed=1))
    pre.save_pretrained(tmp_path)
    loaded = TabularPreprocessor.from_pretrained(tmp_path)
    z = noise(pre, n=500, seed=2)
    pd.testing.assert_frame_equal(loaded.inverse_transform(z), pre.inverse_transform(z))
    assert 0 < (loaded.inverse_transform(z).dose == 0.0).sum() < 30


def test_bounds_on_the_same_training_rows_are_decided_together():
    from diffusers_xai.modalities.tabular.modality import _kept_by_rule_note

    df = load_breast_cancer_frame()
    pre = TabularPreprocessor.fit(df)
    leader, *followers = pre.bounded
    assert leader["name"] == "mean_concavity" and "bound_with" not in leader
    assert all(c["bound_with"] == {":min": ["mean_concavity", ":min"]} for c in followers)
    thresholds = pre.calibrate_missingness(noise(pre, seed=1))
    assert list(thresholds) == ["mean_concavity:min"]  # the followers have none of their own
    zeros = (pre.inverse_transform(noise(pre, seed=2))[[c["name"] for c in pre.bounded]] == 0.0).sum(axis=1)
    assert set(zeros) == {0, 6} and (zeros == 6).mean() == pytest.approx(13 / 569, abs=0.004)
    assert "`worst_concave_points` = 0 exactly where `mean_concavity` = 0" in _kept_by_rule_note(pre.columns)
    # decided apart without derived_columns: independent noise then gives rows with some zeros only
    apart = TabularPreprocessor.fit(df, derived_columns=False)
    assert not any("bound_with" in c for c in apart.bounded)
    apart.calibrate_missingness(noise(apart, seed=1))
    zeros = (apart.inverse_transform(noise(apart, seed=2))[[c["name"] for c in apart.bounded]] == 0.0).sum(axis=1)
    assert ((zeros > 0) & (zeros < 6)).mean() > 0.1  # P(some but not all of six at 2.3% each) = 12.9%


@pytest.mark.slow
def test_trained_model_writes_the_zero_concavities_at_their_training_share(tmp_path):
    """breast_cancer through the trainer: 2,000 DDIM-50 rows (not the calibration's seed) are 0.0 in all six
    concavity columns on the training share within 3 standard errors, and never in some of them only. The grid alone
    wrote 0.6-1.2% per column with DDPM-1000 against 2.3%, and 13 rows of 2,000 with some only."""
    from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline
    from diffusers_xai.training import train
    from tests.test_tabular_schema import wine_recipe

    df = load_breast_cancer_frame()
    df.to_parquet(tmp_path / "bc.parquet", index=False)
    train(wine_recipe(tmp_path / "bc.parquet", tmp_path / "out", condition_column=None, max_train_steps=1000))
    pipe = TabularXAIPipeline.from_pretrained(tmp_path / "out")
    pipe.set_scheduler("ddim")
    pipe.set_progress_bar_config(disable=True)
    n, share = 2000, pipe.preprocessor.bounded[0]["atoms"][0]
    rows = pipe(num_rows=n, generator=torch.Generator().manual_seed(1), num_inference_steps=50).rows
    assert rows.dtypes.to_dict() == df.dtypes.to_dict()
    zeros = rows[[c["name"] for c in pipe.preprocessor.bounded]] == 0.0
    assert set(zeros.sum(axis=1)) == {0, 6}
    assert abs(zeros.iloc[:, 0].mean() - share) <= 3 * np.sqrt(share * (1 - share) / n), zeros.iloc[:, 0].mean()

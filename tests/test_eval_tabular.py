import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.model_selection import train_test_split

from diffusers_xai.evaluation import (
    EvaluationReport,
    detection_auc,
    distance_to_closest_record,
    evaluate_table,
    infer_metadata,
    train_synthetic_test_real,
)


def _noisy(df, scale, seed=0, exclude=("target",)):
    rng = np.random.default_rng(seed)
    out = df.copy()
    cols = [c for c in df.columns if c not in exclude and pd.api.types.is_float_dtype(df[c])]
    out[cols] = out[cols] + rng.normal(0, scale, (len(df), len(cols))) * df[cols].std().to_numpy()
    return out


@pytest.fixture(scope="module")
def cancer():
    df = load_breast_cancer(as_frame=True).frame
    df = df[[*df.columns[:10], "target"]]  # the ten "mean ..." features keep the tests fast
    return train_test_split(df, test_size=0.3, random_state=0, stratify=df["target"])


@pytest.fixture(scope="module")
def wine():
    df = load_wine(as_frame=True).frame
    df = df[["alcohol", "malic_acid", "magnesium", "flavanoids", "color_intensity", "proline", "target"]]
    df["grade"] = pd.Categorical(np.where(df["alcohol"] > 13, "high", "low"))  # a string categorical column
    return train_test_split(df, test_size=0.3, random_state=0, stratify=df["target"])


def test_tstr_of_real_equals_train_on_real(cancer):
    train, test = cancer
    same = train_synthetic_test_real(train, train, test, "target")
    assert same.task == "classification" and same.metric == "macro F1"
    assert same.tstr == same.trtr and same.ratio == 1.0
    assert 0.9 < same.trtr < 1.0
    worse = train_synthetic_test_real(train, _noisy(train, 3.0), test, "target")
    assert worse.trtr == same.trtr and worse.tstr < same.tstr


def test_tstr_regression_uses_r2(wine):
    train, test = wine
    res = train_synthetic_test_real(train, train, test, "proline")
    assert res.task == "regression" and res.metric == "R²" and res.tstr == res.trtr and 0.3 < res.trtr < 1


def test_detection_auc_two_sample_test(cancer):
    train, test = cancer
    assert detection_auc(train, test, folds=3) == pytest.approx(0.5, abs=0.12)  # two real samples
    assert detection_auc(train, _noisy(train, 2.0), folds=3) > 0.85


def test_detection_does_not_depend_on_the_order_of_the_rows():
    """Two draws of one distribution (three classes, a number that depends on the class): the detection AUC is near
    0.5 whether the real table comes sorted by class (as files often are) or shuffled. When the row subsample and the
    folds shared one seed, each fold held a contiguous block of the table as given, so a sorted table put one class's
    real rows in a fold against synthetic rows of every class: 0.30 at seed 0."""

    def draw(n, seed):
        rng = np.random.default_rng(seed)
        label = rng.integers(0, 3, n)
        return pd.DataFrame({"label": np.array(["a", "b", "c"])[label], "x": label + rng.normal(0, 0.5, n)})

    real, synthetic = draw(600, 0), draw(900, 1)
    metadata = infer_metadata(real)
    in_order = real.sort_values("label", kind="stable", ignore_index=True)
    for seed in range(3):
        for table in (in_order, real):
            auc = detection_auc(table, synthetic, metadata, seed=seed)
            assert abs(auc - 0.5) < 0.06, (seed, auc)


def test_detection_does_not_see_levels_held_by_fewer_than_ten_rows():
    """scikit-learn's gradient boosting does not split on a level with fewer than 10 rows (`MIN_CAT_SUPPORT`): a
    near-unique name column tells nothing, whatever the synthetic names are (drawn from the real ones, or fresh), and
    the AUC is exactly 0.5. A two-level column whose shares differ (70/30 against 30/70) is seen, near its
    population AUC of 0.7."""
    rng = np.random.default_rng(0)
    names = np.array([f"name {i}" for i in range(150)] + [f"twin {i // 2}" for i in range(50)])
    real = pd.DataFrame({"name": names})
    metadata = infer_metadata(real)
    assert metadata["columns"]["name"]["sdtype"] == "categorical"
    redrawn = pd.DataFrame({"name": names[rng.integers(0, len(names), len(names))]})
    fresh = pd.DataFrame({"name": [f"other {i}" for i in range(200)]})
    for synthetic in (redrawn, fresh):
        assert detection_auc(real, synthetic, metadata) == 0.5
    shares = pd.DataFrame({"level": ["a"] * 140 + ["b"] * 60})
    flipped = pd.DataFrame({"level": ["a"] * 60 + ["b"] * 140})
    assert detection_auc(shares, flipped) == pytest.approx(0.7, abs=0.05)  # 0.5 + (0.7 - 0.3) / 2


def test_infer_metadata(wine):
    md = infer_metadata(wine[0])["columns"]
    assert md["target"]["sdtype"] == "categorical"  # integer with 3 values
    assert md["grade"]["sdtype"] == "categorical"
    assert md["proline"]["sdtype"] == "numerical"


def test_identifiers_are_not_scored_and_quarters_are_dates():
    """The evaluation reads a table as the preprocessor writes it. statsmodels' fair_pt: its regenerated `identifier`
    (ids after the largest real one) was scored as a number, and a run read detection AUC 1.0, that column's Shape 0.
    danish_data's quarters (`1974Q1`) stopped the trainer: SDMetrics and the distances parse a `datetime_format` with
    pandas, which has no quarter field."""
    rng = np.random.default_rng(0)
    n = 200
    real = pd.DataFrame(
        {
            "identifier": rng.permutation(np.arange(4, 4 * n + 4, 4))[:n],  # unique, not contiguous
            "quarter": [f"{1974 + k // 4}Q{k % 4 + 1}" for k in rng.integers(0, 40, n)],
            "x": rng.normal(size=n),
        }
    )
    md = infer_metadata(real)["columns"]
    assert md["identifier"] == {"sdtype": "id"} and md["quarter"] == {"sdtype": "datetime", "datetime_format": "%YQ%q"}
    assert infer_metadata(real.rename(columns={"identifier": "count"}))["columns"]["count"]["sdtype"] == "numerical"
    synthetic = real.assign(identifier=np.arange(1000, 1000 + n), x=rng.normal(size=n))  # fresh ids
    report = evaluate_table(real, synthetic, real_test=real.assign(x=rng.normal(size=n)), sdmetrics_privacy=False)
    assert set(report.details["column_shapes"]) == {"quarter", "x"}
    assert report["detection_auc"].value < 0.7 and report["quality_score"].value > 0.9
    assert report.details["metadata"]["columns"]["quarter"] == {"sdtype": "datetime"}  # parsed before SDMetrics


@pytest.mark.slow
def test_evaluate_table_report(wine, tmp_path):
    train, test = wine
    copies = train.sample(frac=1.0, random_state=1)
    report = evaluate_table(
        train,
        copies,
        target="target",
        real_test=test,
        output_dir=tmp_path,
        dataset_name="sklearn wine",
        detection_folds=3,
    )
    assert report.modality == "tabular" and report.num_real == len(train)
    assert report["quality_score"].value == pytest.approx(1.0, abs=1e-6)  # identical distributions
    assert report["exact_copy_rate"].value == 1.0 and report["dcr_median"].value == 0.0
    assert report["dcr_baseline_protection"].value == 0.0  # sdmetrics: copies have no protection
    assert report["dcr_median_holdout"].value > 0
    assert report["tstr"].value == report["trtr"].value
    assert report["detection_auc"].value < 0.5  # duplicated rows in both classes: out-of-fold AUC collapses below 0.5
    noisy = evaluate_table(train, _noisy(train, 0.5), target="target", real_test=test, detection_folds=3)
    assert noisy["quality_score"].value < report["quality_score"].value
    assert noisy["exact_copy_rate"].value == 0.0 and noisy["dcr_baseline_protection"].value > 0.2
    assert 0 < noisy["dcr_overfitting_protection"].value <= 1
    assert "SDMetrics DCRBaselineProtection" in dict(noisy.to_eval_results())
    restored = EvaluationReport.load(noisy.save(tmp_path / "table.json"))
    assert restored.to_eval_results() == noisy.to_eval_results()
    assert (tmp_path / "table_scores.png").exists()


@pytest.mark.slow
def test_evaluate_table_without_holdout_warns(wine):
    train, _ = wine
    report = evaluate_table(train, _noisy(train, 0.3), target="target", detection_folds=3)
    assert any("Pass `real_test`" in w for w in report.warnings)
    assert "dcr_overfitting_protection" not in report


def test_bad_tables(wine):
    train, test = wine
    with pytest.raises(ValueError, match=r"missing \['grade'\], unexpected \['extra'\]"):
        evaluate_table(train, train.drop(columns="grade").assign(extra=1))
    with pytest.raises(TypeError, match="pandas DataFrame"):
        evaluate_table(train, train.to_numpy())
    with pytest.raises(ValueError, match="'proline' is numerical .* dtype object"):
        evaluate_table(train, train.assign(proline=train["proline"].astype(str)))
    with pytest.raises(ValueError, match="`target` 'label' is not a column"):
        train_synthetic_test_real(train, train, test, "label")
    one_class = train.assign(target=0)
    with pytest.raises(ValueError, match="single class"):
        train_synthetic_test_real(train, one_class, test, "target")
    with pytest.raises(ValueError, match="has no rows"):
        evaluate_table(train, train.iloc[:0])


def test_distance_to_closest_record_matches_sdmetrics():
    from sdmetrics.single_table.privacy.dcr_utils import calculate_dcr

    rng = np.random.default_rng(0)
    real = pd.DataFrame(
        {
            "x": rng.normal(size=40),
            "n": rng.integers(0, 3, 40).astype(float),
            "c": rng.choice(["a", "b", "c"], 40),
            "flag": rng.random(40) > 0.5,
            "const": 1.0,
        }
    )
    real.loc[3, "x"] = np.nan
    real.loc[5, "c"] = None
    synth = pd.DataFrame(
        {
            "x": rng.normal(scale=3, size=25),
            "n": rng.integers(0, 5, 25).astype(float),
            "c": rng.choice(["a", "b", "d"], 25),
            "flag": rng.random(25) > 0.5,
            "const": rng.choice([1.0, 2.0], 25),
        }
    )
    synth.loc[0, "x"] = np.nan
    synth.loc[1, "c"] = None
    md = {
        "columns": {
            "x": {"sdtype": "numerical"},
            "n": {"sdtype": "numerical"},
            "c": {"sdtype": "categorical"},
            "flag": {"sdtype": "boolean"},
            "const": {"sdtype": "numerical"},
        }
    }
    ours = distance_to_closest_record(synth, real, md, max_bytes=2_000)
    ref = calculate_dcr(dataset=synth, reference_dataset=real, metadata=md).to_numpy(float)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_gbm_metrics_group_the_rarest_of_more_than_255_levels():
    """HistGradientBoosting refuses a categorical feature with more than 255 codes (vega airports: 2,280 names)."""
    rng = np.random.default_rng(0)

    def table(n, shift=0.0):
        city = rng.integers(0, 400, n)  # 400 levels, each in about 1.5 of 600 rows: categorical, not an id
        x = city / 400 + rng.normal(shift, 0.1, n)
        return pd.DataFrame({"city": [f"c{i}" for i in city], "x": x, "big": np.where(x > 0.5, "yes", "no")})

    real, other = table(600), table(600)
    metadata = {
        "columns": {"city": {"sdtype": "categorical"}, "x": {"sdtype": "numerical"}, "big": {"sdtype": "categorical"}}
    }
    assert detection_auc(real, other, metadata, folds=3) == pytest.approx(0.5, abs=0.08)
    assert detection_auc(real, table(600, shift=1.0), metadata, folds=3) > 0.95
    res = train_synthetic_test_real(real, real, other, "big", metadata)
    assert res.task == "classification" and res.tstr == res.trtr and res.trtr > 0.95


def test_a_high_detection_auc_is_warned_naming_the_columns_furthest_off(wine):
    """Rows whose `proline` is moved by three standard deviations are told apart (AUC >= 0.9): the report warns and
    names `proline` first, by its SDMetrics shape; rows with small noise on every column are not warned about."""
    train, test = wine
    moved = _noisy(test, 0.05, seed=1).assign(proline=test["proline"] + 3 * train["proline"].std())
    report = evaluate_table(train, moved, sdmetrics_privacy=False)
    auc, shapes = report["detection_auc"].value, report.details["column_shapes"]
    worst = sorted(shapes, key=shapes.get)[:3]
    assert auc >= 0.9 and worst[0] == "proline"
    expected = (
        f"Detection AUC {auc:.3f} >= 0.9: a classifier tells the synthetic rows from the real ones. Column shapes "
        f"furthest from the real ones: {', '.join(f'{c} ({shapes[c]:.2f})' for c in worst)}. Check them before "
        "publishing: a model that has not learnt them needs more updates or rows; a column of mostly once-seen "
        "levels (names, addresses) in a small table is better drawn outside the model (`marginal_columns`)."
    )
    assert [w for w in report.warnings if w.startswith("Detection AUC")] == [expected]
    close = evaluate_table(train, _noisy(test, 0.05, seed=1), sdmetrics_privacy=False)
    assert close["detection_auc"].value < 0.9
    assert not any(w.startswith("Detection AUC") for w in close.warnings)

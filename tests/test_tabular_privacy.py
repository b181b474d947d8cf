"""Privacy of synthetic tables: the DCR ratio against a holdout (report, training run) and the near-copy guard."""

import json
import re
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from diffusers_xai.evaluation import distance_to_closest_record, evaluate_table, infer_metadata
from diffusers_xai.evaluation.tabular_privacy import (
    DCRRatio,
    check_guard_can_judge,
    dcr_ratio,
    dcr_ratio_lower_bound,
    independent_columns,
    independent_columns_ratio,
    reference_distances,
    reject_near_copies,
)
from diffusers_xai.training import TrainingConfig, train


def gaussian_table(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1] + 0.5 * x[:, 0], "c": x[:, 2], "g": rng.choice(["u", "v"], n)})


def test_dcr_ratio_separates_copies_from_fresh_rows():
    train_rows, holdout = gaussian_table(300, 0), gaussian_table(100, 1)
    copies = dcr_ratio(train_rows.iloc[:100], train_rows, holdout)
    assert copies.ratio == 0.0 and copies.median_synthetic == 0.0
    assert copies.pooled_ratio == 0.0 and (copies.holdout_rows, copies.reference_rows) == (100, 400)
    assert copies.warning.startswith(
        "DCR ratio 0.000 < 0.9 (against the 100 held-out rows pooled with the training rows' leave-one-out distances; "
        "0.000 against the held-out rows alone): synthetic rows are closer to the training rows"
    )
    fresh = dcr_ratio(gaussian_table(1000, 2), train_rows, holdout)
    # a fresh draw of the same distribution is as far from the training rows as the holdout is
    assert abs(fresh.ratio - 1) < 0.1 and fresh.warning is None
    half = pd.concat([train_rows.iloc[:500], gaussian_table(500, 3)], ignore_index=True)
    assert dcr_ratio(half, train_rows, holdout).ratio < 0.9 < fresh.ratio


def test_an_all_missing_column_is_measured_without_numpy_warnings():
    """statsmodels' fertility (two empty years): the guard's distances printed numpy's "All-NaN slice encountered"
    three times before the table was refused. Such a column has no range; two missing values are equal."""
    train_rows = gaussian_table(50, 0).assign(empty=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        distances = distance_to_closest_record(train_rows.iloc[:10], train_rows, infer_metadata(train_rows))
    np.testing.assert_array_equal(distances, np.zeros(10))


def test_an_undefined_dcr_ratio_says_so_instead_of_reporting_memorisation():
    # a table of few distinct rows: most held-out rows duplicate a training row, so the holdout's median DCR is 0
    rng = np.random.default_rng(0)
    levels = pd.DataFrame({"a": [0.0, 1.0, 2.0], "g": ["u", "v", "u"]})
    train_rows = levels.iloc[rng.integers(0, 3, 60)].reset_index(drop=True)
    holdout = levels.iloc[rng.integers(0, 3, 20)].reset_index(drop=True)
    ratio = dcr_ratio(gaussian_table(50, 2)[["a", "g"]], train_rows, holdout)
    assert np.isnan(ratio.ratio) and ratio.median_holdout == 0.0
    assert ratio.warning.startswith("DCR ratio undefined: the median held-out row's distance to the closest training")
    assert "memorisation" not in ratio.warning


def test_evaluation_reports_the_dcr_ratio_with_a_warning():
    train_rows, holdout = gaussian_table(200, 0), gaussian_table(80, 1)
    synthetic = pd.concat([train_rows.iloc[:150], gaussian_table(50, 2)], ignore_index=True)
    report = evaluate_table(train_rows, synthetic, real_test=holdout, sdmetrics_privacy=False)
    expected = dcr_ratio(synthetic, train_rows, holdout)
    assert report["dcr_ratio"].value == pytest.approx(expected.ratio) and expected.ratio < 0.9
    assert any(w.startswith("DCR ratio") and "(memorisation)" in w for w in report.warnings)
    assert report.details["dcr_ratio"]["median_holdout"] == pytest.approx(expected.median_holdout)
    assert report["dcr_ratio_pooled"].value == pytest.approx(expected.pooled_ratio) and expected.pooled_ratio < 0.9
    # beside it, the ratio of rows that copy no row against the same pooled reference (only a and b correlate: about
    # 1; 1.1137 against the 80 held-out rows alone), above 0.9: the warning stands
    baseline = report["dcr_ratio_independent_columns"].value
    assert (
        baseline == report.details["dcr_ratio"]["independent_columns"] == pytest.approx(expected.independent_columns)
    )
    assert baseline == pytest.approx(1.0205, abs=5e-4)


def test_the_verdict_reads_the_pooled_reference_and_says_what_the_holdout_alone_reads():
    """Hand-made distances: 3 held-out rows at 1.0, 1.1, 1.2 (median 1.1) and 7 training rows whose closest other
    training row is 0.85 away, so the pooled median of 10 is 0.85. statsmodels' danish_data (11 held-out rows) read
    0.878 alone and 1.02-1.06 pooled after a guard whose check's lower bound was 0.968."""
    holdout, loo = np.array([1.0, 1.1, 1.2]), np.full(7, 0.85)
    reference = np.concatenate([holdout, loo])
    near = DCRRatio.from_distances(np.full(20, 0.9), holdout, 2.0, reference)
    assert near.ratio == pytest.approx(0.9 / 1.1) and near.pooled_ratio == pytest.approx(0.9 / 0.85)
    assert near.warning == (
        "DCR ratio 0.818 against the 3 held-out rows alone, but 1.059 against them pooled with the training rows' "
        "leave-one-out distances (10 rows, the guard's reference): the held-out rows' median distance alone is "
        "noisier, and the pooled ratio, above 0.9, is the one to read."
    )
    copies = DCRRatio.from_distances(np.full(20, 0.5), holdout, 2.0, reference)
    assert copies.warning.startswith(
        "DCR ratio 0.588 < 0.9 (against the 3 held-out rows pooled with the training rows' leave-one-out distances; "
        "0.455 against the held-out rows alone): synthetic rows are closer to the training rows than real held-out "
        "rows are (memorisation)."
    )
    # a pooled median of 0 (most training rows duplicate another) leaves the verdict to the holdout alone
    duplicated = DCRRatio.from_distances(np.full(20, 0.9), holdout, 2.0, np.concatenate([holdout, np.zeros(7)]))
    assert np.isnan(duplicated.pooled_ratio) and duplicated.verdict_ratio == duplicated.ratio
    assert duplicated.warning.startswith("DCR ratio 0.818 < 0.9: synthetic rows are closer")
    assert DCRRatio.from_distances(np.full(20, 0.9), holdout, 2.0).warning.startswith("DCR ratio 0.818 < 0.9: synth")


def barley_split():
    """vega's barley: 10 varieties x 6 sites x 2 years, each combination once, with its yield; 24 rows held out."""
    from vega_datasets import local_data

    rows = local_data.barley()
    order = np.random.default_rng(0).permutation(len(rows))
    return rows.iloc[order[24:]].reset_index(drop=True), rows.iloc[order[:24]].reset_index(drop=True)


def test_rows_drawn_column_by_column_keep_each_columns_distribution_and_copy_no_row():
    """Levels are drawn as they occur; floats from a kernel density estimate: in their range, a training value only
    where clipped to an end, with about their spread (Silverman's bandwidth widens it by 1-5% here, a bandwidth of
    one sd would by 41%)."""
    train_rows = gaussian_table(300, 0)
    rows = independent_columns(train_rows, 1000, seed=3)
    assert rows.dtypes.equals(train_rows.dtypes) and len(rows) == 1000
    assert set(rows["g"]) == {"u", "v"} and abs((rows["g"] == "u").mean() - (train_rows["g"] == "u").mean()) < 0.05
    for column in "abc":
        low, high = train_rows[column].min(), train_rows[column].max()
        assert rows[column].between(low, high).all()
        inside = rows[column][(rows[column] > low) & (rows[column] < high)]  # the rest is clipped to an end
        assert len(inside) > 990 and not inside.isin(train_rows[column]).any()
        assert 1.0 < rows[column].std() / train_rows[column].std() < 1.06
    assert rows.equals(independent_columns(train_rows, 1000, seed=3))


def test_a_table_whose_held_out_rows_differ_by_design_reads_undetermined_not_memorisation():
    """On barley a held-out row's variety x site x year is by construction missing from the training rows, while rows
    that reuse the columns' values mostly land on a training combination: rows that copy no row read 0.27, and the
    warning says the ratio cannot tell copying instead of reporting memorisation."""
    train_rows, holdout = barley_split()
    metadata = infer_metadata(train_rows)
    holdout_dcr = distance_to_closest_record(holdout, train_rows, metadata)
    baseline = independent_columns_ratio(train_rows, holdout_dcr, metadata)
    assert baseline == pytest.approx(0.2682, abs=5e-4)
    ratio = dcr_ratio(independent_columns(train_rows, 500, seed=1), train_rows, holdout)
    # against the guard's pooled reference (which the verdict reads) the baseline reads the same to 3 decimals
    pooled = independent_columns_ratio(train_rows, reference_distances(train_rows, holdout, metadata), metadata)
    assert ratio.independent_columns == pytest.approx(pooled) == pytest.approx(baseline, abs=5e-4)
    assert ratio.verdict_ratio == ratio.pooled_ratio < 0.9
    assert ratio.warning.startswith(
        f"DCR ratio {ratio.pooled_ratio:.3f} cannot tell copying on this table: rows whose every column is drawn on "
        "its own from the training rows, which copy no row, read a DCR ratio of 0.268 (< 0.9), because the held-out "
        "rows differ"
    )
    assert "memorisation" not in ratio.warning
    # the sampling guard would refuse 83% of such rows (the holdout's 5% quantile is 0.25): it refuses the table
    with pytest.raises(
        ValueError, match=r"^`reject_near_copies` cannot judge this table: .* read a DCR ratio of 0\.268"
    ):
        reject_near_copies(lambda n, r: independent_columns(train_rows, n, seed=r), 100, train_rows, holdout)
    # a table without that design keeps its verdict: gaussian rows copied from the training rows are memorisation
    assert (
        "(memorisation)"
        in dcr_ratio(gaussian_table(300, 0).iloc[:100], gaussian_table(300, 0), holdout=gaussian_table(100, 1)).warning
    )


def test_near_copy_guard_rejects_rows_closer_than_the_holdout_quantile():
    train_rows, holdout = gaussian_table(300, 0), gaussian_table(100, 1)
    metadata = infer_metadata(train_rows)

    def leaky_sampler(n, round_index):  # half the rows are copies of training rows
        rng = np.random.default_rng(round_index)
        fresh = gaussian_table(n - n // 2, 100 + round_index)
        return pd.concat([train_rows.iloc[rng.choice(300, n // 2)], fresh], ignore_index=True)

    guarded = reject_near_copies(leaky_sampler, 200, train_rows, holdout, quantile=0.05)
    threshold = np.quantile(distance_to_closest_record(holdout, train_rows, metadata), 0.05)
    assert guarded.threshold == pytest.approx(threshold) and len(guarded.rows) == 200
    assert (distance_to_closest_record(guarded.rows, train_rows, metadata) >= threshold).all()
    assert 0.5 <= guarded.rejection_rate < 0.6  # all copies, plus about 5% of the fresh rows
    assert dcr_ratio(guarded.rows, train_rows, holdout).ratio > 0.9
    with pytest.raises(ValueError, match=r"Only 0 of .* drawn rows are farther .* the generator copies"):
        reject_near_copies(lambda n, r: train_rows.iloc[:n], 10, train_rows, holdout, max_rounds=2)
    with pytest.raises(ValueError, match=r"`quantile` must be in \(0, 1\), got 1.5"):
        reject_near_copies(leaky_sampler, 10, train_rows, holdout, quantile=1.5)


def test_near_copy_guard_writes_fresh_identifiers_with_the_preprocessor():
    from diffusers_xai.modalities.tabular import TabularPreprocessor

    train_rows, holdout = gaussian_table(300, 0), gaussian_table(100, 1)
    pre = TabularPreprocessor.fit(train_rows.assign(row=np.arange(1, 301)))  # `row` is an identifier

    def sample(n, round_index):  # as a pipeline call, each round numbers its rows from 0
        return gaussian_table(n, 100 + round_index).assign(row=np.arange(301, 301 + n))

    guarded = reject_near_copies(sample, 120, train_rows, holdout, max_rounds=5, preprocessor=pre)
    assert guarded.rows["row"].tolist() == list(range(301, 421))
    plain = reject_near_copies(sample, 120, train_rows, holdout, max_rounds=5)
    assert plain.rows["row"].nunique() < 120  # two or more rounds, each numbered from 301
    pd.testing.assert_frame_equal(plain.rows.drop(columns="row"), guarded.rows.drop(columns="row"))


def test_leave_one_out_distance_is_the_distance_to_the_closest_other_row():
    table = gaussian_table(30, 0)
    table.loc[5] = table.loc[4]  # a duplicate row: its closest other row is at distance 0
    metadata = infer_metadata(table)
    loo = distance_to_closest_record(table, table, metadata, exclude_self=True)
    by_hand = [distance_to_closest_record(table.iloc[[i]], table.drop(index=i), metadata)[0] for i in range(30)]
    # dropping a row that holds a column's min or max changes the range that scales it: compare the other rows
    extremes = {i for c in "abc" for i in (table[c].idxmin(), table[c].idxmax())}
    interior = [i for i in range(30) if i not in extremes]
    assert len(interior) >= 24 and np.allclose(loo[interior], np.asarray(by_hand)[interior])
    assert loo[4] == loo[5] == 0.0 and (loo[[0, 1, 2, 3]] > 0).all()
    assert (distance_to_closest_record(table, table, metadata) == 0).all()
    with pytest.raises(ValueError, match=r"^`exclude_self=True` measures a table against itself: got 30 and 29 rows"):
        distance_to_closest_record(table, table.iloc[1:], metadata, exclude_self=True)


def test_dcr_lower_bound_stops_a_copier_that_a_close_holdout_lets_through():
    """Known answer from a 5,000-row fresh holdout. The guard's old rule (the ratio over its small holdout >= 0.9)
    passes a generator that copies 20% of its rows when the holdout happens to sit close to the training rows (here
    40 rows drawn from the fifth of 400 fresh rows nearest to them; penguins' 48-row holdout at seed 2 was 18%
    closer than fresh rows); the new rule (pooled leave-one-out reference, 90% lower bound) stops it and still
    passes a generator that does not copy."""
    train_rows = gaussian_table(200, 0)
    metadata = infer_metadata(train_rows)
    candidates = gaussian_table(400, 10)
    nearest = np.argsort(distance_to_closest_record(candidates, train_rows, metadata))
    holdout, fresh_holdout = candidates.iloc[nearest[:80:2]], gaussian_table(5000, 20)
    copier = pd.concat([train_rows.iloc[:100], gaussian_table(400, 30)], ignore_index=True)
    honest = gaussian_table(1000, 40)
    assert dcr_ratio(copier, train_rows, fresh_holdout).ratio == pytest.approx(0.870, abs=1e-3)  # it copies
    assert dcr_ratio(honest, train_rows, fresh_holdout).ratio == pytest.approx(0.988, abs=1e-3)  # it does not
    assert dcr_ratio(copier, train_rows, holdout).ratio == pytest.approx(1.781, abs=1e-3)  # old rule: passes
    copier_bound = dcr_ratio_lower_bound(copier, train_rows, holdout)
    assert (copier_bound.ratio, copier_bound.lower_bound) == pytest.approx((0.899, 0.848), abs=1e-3)  # stops
    honest_bound = dcr_ratio_lower_bound(honest, train_rows, holdout)
    assert (honest_bound.ratio, honest_bound.lower_bound) == pytest.approx((1.021, 0.970), abs=1e-3)  # passes
    assert (honest_bound.synthetic_rows, honest_bound.reference_rows, honest_bound.confidence) == (1000, 240, 0.9)
    # no holdout (`validation_split: 0`): the 200 training rows' leave-one-out distances alone give the same verdicts
    copier_loo, honest_loo = (dcr_ratio_lower_bound(rows, train_rows, None) for rows in (copier, honest))
    assert (copier_loo.ratio, copier_loo.lower_bound) == pytest.approx((0.830, 0.798), abs=1e-3)  # stops
    assert (honest_loo.ratio, honest_loo.lower_bound) == pytest.approx((0.944, 0.915), abs=1e-3)  # passes
    assert honest_loo.reference_rows == 200
    # the bound is a quantile of the bootstrap: lower at a higher confidence, the bootstrap's median at 0.5
    assert dcr_ratio_lower_bound(honest, train_rows, holdout, confidence=0.99).lower_bound < honest_bound.lower_bound
    median = dcr_ratio_lower_bound(honest, train_rows, holdout, confidence=0.5).lower_bound
    assert median == pytest.approx(1.043, abs=1e-3)
    with pytest.raises(ValueError, match=r"^`confidence` must be a number in \[0.5, 1\) \(e.g. 0.9\), got 1.0\.$"):
        dcr_ratio_lower_bound(honest, train_rows, holdout, confidence=1.0)
    with pytest.raises(ValueError, match=r"^`num_bootstrap` must be an int >= 100, got 10\.$"):
        dcr_ratio_lower_bound(honest, train_rows, holdout, num_bootstrap=10)


def test_dcr_early_stopping_without_a_holdout_trains_on_every_row_against_the_leave_one_out_reference(tmp_path):
    """`validation_split: 0` with the guard on: all 178 wine rows are trained on, and the check's bound is that of
    its rows against the training rows' leave-one-out distances alone."""
    from diffusers_xai.modalities.tabular.modality import TabularModality
    from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline

    config = early_stopping_config(tmp_path, 100.0, validation_split=0.0)
    result = train(config)
    assert result.stop_reason == "early_stopping" and result.global_step == 2 and result.restored_step is None
    [(_, bound_value)] = result.early_stopping_history
    train_rows, holdout = TabularModality()._train_and_holdout(config, 10_000)
    pipe = TabularXAIPipeline.from_pretrained(str(tmp_path))
    rows = pipe(num_rows=500, generator=torch.Generator().manual_seed(0), num_inference_steps=20).rows
    bound = dcr_ratio_lower_bound(rows, train_rows, None, confidence=0.9, seed=0)
    assert holdout is None and len(train_rows) == 178 and bound.reference_rows == 178
    assert bound_value == pytest.approx(bound.lower_bound)


def test_dcr_ratio_dataclass_round_trip():
    ok = DCRRatio(ratio=1.02, median_synthetic=0.102, median_holdout=0.1, independent_columns=2.0)
    assert ok.to_dict() == {
        "ratio": 1.02,
        "median_synthetic": 0.102,
        "median_holdout": 0.1,
        "independent_columns": 2.0,
        "pooled_ratio": None,
        "holdout_rows": None,
        "reference_rows": None,
        "warning": None,
    }


def test_training_with_a_holdout_reports_the_dcr_ratio(tmp_path):
    config = TrainingConfig.from_dict(
        {
            "modality": "tabular",
            "dataset_name": "wine",
            "condition_column": "cultivar",
            "validation_split": 0.2,
            "hidden_dims": [16, 16],
            "time_embedding_dim": 16,
            "num_train_timesteps": 50,
            "max_train_steps": 3,
            "validation_steps": None,
            "checkpointing_steps": None,
            "validation_num_inference_steps": 4,
            "eval_samples": 60,
            "report_to": "none",
            "seed": 0,
            "output_dir": str(tmp_path),
        }
    )
    result = train(config)
    report = result.evaluation
    assert report.num_real == 142 and report["dcr_ratio"].value == pytest.approx(
        report.details["dcr_ratio"]["median_synthetic"] / report.details["dcr_ratio"]["median_holdout"]
    )
    assert "dcr_ratio" in (tmp_path / "evaluation" / "report.json").read_text()
    card = (tmp_path / "README.md").read_text()
    assert "DCR ratio" in card
    assert result.summary().splitlines()[1:] == report.summary().splitlines()  # printed at the end of the run
    # rows copied from the training rows: the evaluation warns, and the card shows the warning under its results
    from diffusers_xai.modalities.tabular.modality import TabularModality
    from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline
    from diffusers_xai.training.finish import RunSummary, write_card

    train_rows, holdout = TabularModality()._train_and_holdout(config, 10_000)
    # the rows scored are those a user gets by default from the saved pipeline (its scheduler, all 50 steps; the
    # evaluation's generator is seeded seed + 1), not the validation's 4 DDIM steps
    pipe = TabularXAIPipeline.from_pretrained(str(tmp_path))
    rows = pipe(num_rows=60, generator=torch.Generator("cpu").manual_seed(1), num_inference_steps=50).rows
    assert report["dcr_ratio"].value == pytest.approx(dcr_ratio(rows, train_rows, holdout).ratio, rel=1e-9)
    copied = evaluate_table(train_rows, train_rows.head(60), real_test=holdout, sdmetrics_privacy=False)
    [warning] = [w for w in copied.warnings if w.startswith("DCR ratio")]
    write_card(tmp_path, str(tmp_path), config, RunSummary(3, None, 1, 1.0, "max_train_steps"), copied)
    card = (tmp_path / "README.md").read_text()
    assert f"\n> **Warning:** {warning}\n" in card.split("## Evaluation")[1]


def early_stopping_config(tmp_path, ratio, **overrides):
    return TrainingConfig.from_dict(
        {
            "modality": "tabular",
            "dataset_name": "wine",
            "validation_split": 0.2,
            "hidden_dims": [16, 16],
            "time_embedding_dim": 16,
            "num_train_timesteps": 20,
            "max_train_steps": 8,
            "validation_steps": 2,
            "validation_batch_size": 8,
            "validation_num_inference_steps": 4,
            "checkpointing_steps": None,
            "early_stopping_dcr_ratio": ratio,
            "report_to": "none",
            "seed": 0,
            "output_dir": str(tmp_path),
            **overrides,
        }
    )


def scripted_checks(monkeypatch, passes) -> list:
    """Run the guard's real check but script its verdict: call n (from 1) passes iff `passes(n)`. Returns the list
    each call appends `(check interval, value, the EMA weights checked)` to."""
    from diffusers_xai.modalities.tabular.modality import TabularModality

    real_check, seen = TabularModality.early_stopping_check, []

    def scripted(self, pipeline, config):
        name, value, _ = real_check(self, pipeline, config)
        seen.append(
            (config.validation_steps, value, {k: v.clone() for k, v in pipeline.denoiser.state_dict().items()})
        )
        return name, value, passes(len(seen))

    monkeypatch.setattr(TabularModality, "early_stopping_check", scripted)
    return seen


def test_dcr_early_stopping_keeps_the_weights_of_the_last_passing_check(tmp_path, monkeypatch):
    """The real check (DCR ratio of sampled rows against the holdout) runs every 2 steps; its verdict is scripted
    (pass, pass, fail) so the test knows where the run must stop and which weights it must keep."""
    from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline

    checks_seen = scripted_checks(monkeypatch, lambda n: n < 3)
    result = train(early_stopping_config(tmp_path, 0.9))
    seen = [check[1:] for check in checks_seen]  # (value, weights)
    assert result.stop_reason == "early_stopping" and result.global_step == 6 and result.restored_step == 4
    assert result.early_stopping_history == [(2, seen[0][0]), (4, seen[1][0]), (6, seen[2][0])]
    saved = TabularXAIPipeline.from_pretrained(str(tmp_path)).denoiser.state_dict()
    assert all(torch.equal(saved[k], seen[1][1][k]) for k in saved)  # step 4's EMA weights, not step 6's
    assert not all(torch.equal(saved[k], seen[2][1][k]) for k in saved)
    checks = (
        f"3 check(s) from update 2 to 6; update 6 failed ({seen[2][0]:.3f}): the weights of update 4 "
        f"({seen[1][0]:.3f}) are saved"
    )
    assert f"- **early-stopping checks**: {checks}\n" in (tmp_path / "README.md").read_text()
    assert result.summary().splitlines()[1] == f"Early-stopping checks: {checks}."


@pytest.mark.parametrize(
    "passes, intervals, stopped, kept_call, message, card",
    [
        (  # the first check passes and the second fails: the weights kept would be the least trained the guard saw
            lambda n: n != 2 and n < 10,
            [10, 10] + [2] * 8,
            (16, 14),
            8,
            "The early-stopping check at update 20 failed ({1:.4f}) right after the first one: the weights of update "
            "10 may not have learnt the data yet. Training again with a check every 2 updates.",
            "8 check(s) from update 2 to 16; update 16 failed",
        ),
        (  # the first check fails: no weights passed, and the run saved the failing ones (plotly's experiment table)
            lambda n: 1 < n < 6,
            [10] + [2] * 5,
            (10, 8),
            4,
            "The first early-stopping check, at update 10, failed ({0:.4f}): no weights passed. Training again with a "
            "check every 2 updates.",
            "5 check(s) from update 2 to 10; update 10 failed",
        ),
    ],
)
def test_a_guard_that_would_keep_unchecked_weights_trains_again_with_finer_checks(
    tmp_path, monkeypatch, caplog, passes, intervals, stopped, kept_call, message, card
):
    """Checks every 10 updates, scripted. When the weights kept would be the first check's (it passed, the second
    failed) or none passed, the run is trained again from scratch with a check every 2 updates (5 times as often),
    and the weights of the last check that passes there are saved. The same seed gives the same updates: the finer
    run's check at update 10 sees exactly the first run's weights there."""
    import logging

    from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline

    seen = scripted_checks(monkeypatch, passes)
    with caplog.at_level(logging.WARNING):
        result = train(early_stopping_config(tmp_path, 0.9, max_train_steps=40, validation_steps=10))
    assert [interval for interval, _, _ in seen] == intervals
    assert (result.stop_reason, result.global_step, result.restored_step) == ("early_stopping", *stopped)
    assert [step for step, _ in result.early_stopping_history] == list(range(2, stopped[0] + 1, 2))
    first_at_10, finer_at_10 = seen[0], seen[intervals.count(10) + 4]
    assert finer_at_10[1] == first_at_10[1]
    assert all(torch.equal(finer_at_10[2][k], first_at_10[2][k]) for k in first_at_10[2])
    saved = TabularXAIPipeline.from_pretrained(str(tmp_path)).denoiser.state_dict()
    assert all(torch.equal(saved[k], seen[kept_call][2][k]) for k in saved)
    assert message.format(*(value for _, value, _ in seen)) in caplog.text
    assert card in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize(
    "passes, stopped, message",
    [
        (  # the finer pass keeps its first check (statsmodels' heart: update 50 of 4,000, Quality 0.721)
            lambda n: n == 2,
            (4, 2),
            "Even with a check every 2 updates, the guard kept its first check's weights (update 2, lower bound "
            "{1:.3f}): the model went from not learnt to copying within 2 updates, so its rows may not have learnt",
        ),
        (  # no check passes at all: the weights saved are those that failed
            lambda n: False,
            (2, None),
            "Even with a check every 2 updates, no check passed (update 2: lower bound {1:.3f}): the saved weights "
            "are those that failed.",
        ),
    ],
)
def test_a_finer_pass_that_keeps_its_first_check_says_so(tmp_path, monkeypatch, caplog, passes, stopped, message):
    """Checks every 10 updates, scripted: the first (update 10) fails, so the run trains again with a check every 2.
    When that pass too keeps its first check's weights, or none passes, the log says what the saved weights are."""
    import logging

    seen = scripted_checks(monkeypatch, passes)
    with caplog.at_level(logging.WARNING):
        result = train(early_stopping_config(tmp_path, 0.9, max_train_steps=40, validation_steps=10))
    assert [interval for interval, _, _ in seen] == [10, 2, 2][: len(seen)] and len(seen) == 1 + stopped[0] // 2
    assert (result.stop_reason, result.global_step, result.restored_step) == ("early_stopping", *stopped)
    assert caplog.text.count("Even with a check") == 1 and message.format(*(v for _, v, _ in seen)) in caplog.text


def test_the_guard_computes_its_reference_distances_once_per_run(tmp_path, monkeypatch):
    """Four checks (every 2 of 8 updates) against the same rows: the holdout's and the training rows' leave-one-out
    distances are computed once, before training, and every check's bound uses them. The guard and the end-of-run
    evaluation take the trainer's own split: the table is read once per run (three times before)."""
    from diffusers_xai.evaluation import tabular_privacy
    from diffusers_xai.modalities.tabular.modality import TabularModality

    real, calls = tabular_privacy.reference_distances, []
    real_load, loads = TabularModality.load_dataset, []

    def counted(*args, **kwargs):
        calls.append(len(args[0]))
        return real(*args, **kwargs)

    def counted_load(self, config):
        loads.append(config.dataset_name)
        return real_load(self, config)

    monkeypatch.setattr(tabular_privacy, "reference_distances", counted)
    monkeypatch.setattr(TabularModality, "load_dataset", counted_load)
    result = train(early_stopping_config(tmp_path, 0.01, eval_samples=40))  # every check passes: all four run
    assert [step for step, _ in result.early_stopping_history] == [2, 4, 6, 8]
    assert calls == [142]  # wine's 178 rows less the 20% holdout
    assert loads == ["wine"] and result.evaluation.num_real == 142


def test_dcr_early_stopping_measures_the_dcr_ratio_of_default_samples(tmp_path):
    # an unreachable ratio fails the first check: the run stops there, with no passing weights to go back to
    result = train(early_stopping_config(tmp_path / "strict", 100.0))
    assert result.stop_reason == "early_stopping" and result.global_step == 2 and result.restored_step is None
    [(step, ratio)] = result.early_stopping_history
    # the same rows again: as many as the holdout, at least 500, all 20 DDPM steps, seed 0
    config = early_stopping_config(tmp_path / "strict", 100.0)
    from diffusers_xai.modalities.tabular.modality import TabularModality
    from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline

    train_rows, holdout = TabularModality()._train_and_holdout(config, 10_000)
    pipe = TabularXAIPipeline.from_pretrained(str(tmp_path / "strict"))
    rows = pipe(num_rows=500, generator=torch.Generator().manual_seed(0), num_inference_steps=20).rows
    bound = dcr_ratio_lower_bound(rows, train_rows, holdout, confidence=0.9, seed=0)
    assert len(holdout) == 36 and ratio == pytest.approx(bound.lower_bound) and bound.lower_bound < bound.ratio
    # a ratio every model passes never stops the run
    relaxed = train(early_stopping_config(tmp_path / "relaxed", 1e-6))
    assert relaxed.stop_reason == "max_train_steps" and [s for s, _ in relaxed.early_stopping_history] == [2, 4, 6, 8]
    lowest_step, lowest = min(relaxed.early_stopping_history, key=lambda check: check[1])
    cards = {name: (tmp_path / name / "README.md").read_text() for name in ("strict", "relaxed")}
    assert f"1 check(s) from update 2 to 2; update 2 failed ({ratio:.3f}): no check passed" in cards["strict"]
    passed = f"4 check(s) from update 2 to 8, all passed (lowest {lowest:.3f} at update {lowest_step})"
    assert passed in cards["relaxed"]


def test_dcr_early_stopping_needs_checks(tmp_path):
    early_stopping_config(tmp_path, 0.9, validation_split=0.0).validate()  # no holdout: the leave-one-out reference
    with pytest.raises(ValueError, match=r"^`early_stopping_dcr_ratio: 0.9` measures .* got validation_steps=None"):
        early_stopping_config(tmp_path, 0.9, validation_steps=None).validate()
    message = (
        "`refit_on_all_rows: true` gives back the rows `validation_split` held out, but validation_split is 0 (the "
        "guard already trains on every row): set refit_on_all_rows: false."
    )
    with pytest.raises(ValueError) as err:
        early_stopping_config(tmp_path, 0.9, validation_split=0.0, refit_on_all_rows=True).validate()
    assert str(err.value) == message
    with pytest.raises(ValueError, match=r"`early_stopping_dcr_ratio` must be a positive number .* got -1"):
        early_stopping_config(tmp_path, -1).validate()
    with pytest.raises(ValueError, match=r"or turn the guard off with early_stopping_dcr_ratio: null\.$"):
        early_stopping_config(tmp_path, 0.9, validation_steps=None).validate()
    for bad in (1.0, 0.3, "high", True):
        with pytest.raises(
            ValueError,
            match=rf"^`early_stopping_confidence` must be a number in \[0.5, 1\) \(e.g. 0.9; 0.5: the "
            rf"bootstrap's median\), got {bad!r}\.$",
        ):
            early_stopping_config(tmp_path, 0.9, early_stopping_confidence=bad).validate()


def test_dcr_early_stopping_refuses_a_table_of_duplicates_before_training(tmp_path):
    """Most rows repeat a few distinct ones: every DCR ratio would be NaN and the first check would stop the run as
    if the model copied; the guard refuses the table before the first update instead."""
    rows = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0] * 30, "g": ["u", "v", "u", "v"] * 30})
    rows.to_csv(tmp_path / "repeats.csv", index=False)
    config = early_stopping_config(tmp_path / "run", 0.9, dataset_name=str(tmp_path / "repeats.csv"))
    with pytest.raises(ValueError) as err:
        train(config)
    assert str(err.value) == (
        "`early_stopping_dcr_ratio` cannot judge this table: 120 of its 120 real rows duplicate a training row "
        "exactly, so the median real row's distance to the closest training row is 0 and every DCR ratio is "
        "undefined; set early_stopping_dcr_ratio: null (and compare the share of synthetic rows that duplicate a "
        "training row with the real rows')."
    )
    assert not (tmp_path / "run" / "checkpoints").exists()
    train(early_stopping_config(tmp_path / "off", None, dataset_name=str(tmp_path / "repeats.csv"), max_train_steps=2))


def test_dcr_early_stopping_refuses_a_table_whose_rows_differ_by_design_before_training(tmp_path, monkeypatch):
    """Barley through the recipe stopped at its first check (update 250, lower bound 0.161) and kept untrained
    weights, reporting memorisation; the guard now refuses the table before the first update, with the ratio that rows
    copying no row read, and trains without it."""
    from vega_datasets import local_data

    path = local_data.barley.filepath
    config = early_stopping_config(tmp_path / "run", 0.9, dataset_name=path)
    with pytest.raises(ValueError) as err:
        train(config)
    assert str(err.value).startswith(
        "`early_stopping_dcr_ratio` cannot judge this table: rows whose every column is drawn on its own from the "
        "training rows, which copy no row, read a DCR ratio of 0.268 (< 0.9), because the held-out rows differ from "
        "the training rows by the table's design"
    )
    assert not (tmp_path / "run" / "checkpoints").exists()
    # bench/dcr_baseline.py prints the ratio the guard compares, on the guard's own split
    from tests.repo_scripts import ROOT, load_script

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    assert f"{load_script('bench/dcr_baseline.py').guard_baseline(local_data.barley(), 0):.3f}" == "0.268"
    # a threshold below what those rows read is the user's to set: the guard then runs
    train_rows, holdout = barley_split()
    check_guard_can_judge(train_rows, holdout, threshold=0.2)
    with pytest.raises(ValueError, match=r"read a DCR ratio of 0\.2\d\d \(< 0\.9\)"):
        check_guard_can_judge(train_rows, holdout, threshold=0.9)
    train(early_stopping_config(tmp_path / "off", None, dataset_name=path, max_train_steps=2))


def test_a_tiny_table_is_refused_for_its_size_not_its_design(tmp_path):
    """plotly's medals (3 rows: 2 train, 1 held out) was refused as a table whose rows differ by design."""
    import plotly.express as px

    path = tmp_path / "medals.csv"
    px.data.medals_wide().to_csv(path, index=False)
    with pytest.raises(ValueError) as err:
        train(early_stopping_config(tmp_path / "run", 0.9, dataset_name=str(path)))
    assert re.fullmatch(
        r"`early_stopping_dcr_ratio` cannot judge this table: rows whose every column is drawn on its own from the "
        r"training rows, which copy no row, read a DCR ratio of 0\.\d{3} \(< 0\.9\), because 2 training rows are too "
        r"few for distances to tell copying, so the first check would stop any model; .*",
        str(err.value),
    )


def test_wine_recipe_trains_with_the_dcr_guard_on():
    """train/configs/wine.yaml, the recipe a user copies for a small table, has the privacy guard on by default: a
    20% holdout and a DCR check every 250 of its 4,000 updates; with the holdout off it says how to turn it off."""
    config = TrainingConfig.from_yaml("train/configs/wine.yaml")
    options = config.modality_options
    assert (options.early_stopping_dcr_ratio, config.validation_split, config.validation_steps) == (0.9, 0.2, 250)
    assert options.early_stopping_confidence == 0.9  # a 90% lower bound: the seed-2 penguins run copied without it
    assert options.refit_on_all_rows is False  # the refit copied on iris at one seed of three (README)
    assert config.eval_samples == 1000  # the DCR ratio against the holdout is printed and on the card
    config.validate()
    TrainingConfig.from_yaml("train/configs/wine.yaml", {"validation_split": 0.0}).validate()  # leave-one-out guard
    TrainingConfig.from_yaml(
        "train/configs/wine.yaml", {"validation_split": 0.0, "early_stopping_dcr_ratio": None}
    ).validate()


def _bench():
    from tests.repo_scripts import load_script

    return load_script("bench/tabular_quality.py")


def test_bench_trains_ours_with_the_guard_and_names_the_columns_that_give_rows_away():
    bench = _bench()
    assert bench.guard_settings(0.9, 250, True) == {
        "validation_split": 0.2,
        "validation_steps": 250,
        "early_stopping_dcr_ratio": 0.9,
        "refit_on_all_rows": True,
    }
    assert bench.guard_settings(0, 250, True)["early_stopping_dcr_ratio"] is None
    assert bench.guard_settings(0, 250, True)["refit_on_all_rows"] is False
    assert bench.parse_args([]).early_stop_confidence == 0.9  # wine.yaml's
    assert bench.parse_args(["--early_stop_confidence", "0.8"]).early_stop_confidence == 0.8
    real, fresh = gaussian_table(300, 0), gaussian_table(300, 1)
    synthetic = fresh.assign(c=fresh["c"] + 3.0)  # only `c` is off: shifted by 3 standard deviations
    out = bench.per_column_detection(real, synthetic, infer_metadata(real), seed=0)
    assert out["__all__"] > 0.95 and out["c"]["alone"] > 0.95 and out["c"]["without"] < 0.65
    assert all(out[k]["alone"] < 0.65 and out[k]["without"] > 0.95 for k in ("a", "b", "g"))


def test_refit_on_all_rows_refits_for_the_guards_chosen_step_on_every_row(tmp_path, monkeypatch):
    """The guard's checks are scripted (pass, pass, fail: step 4 is chosen); the refit then trains from scratch on all
    178 rows, the 36 holdout rows included, for exactly 4 updates, and its weights are the saved pipeline."""
    from diffusers_xai.modalities.tabular.modality import TabularModality
    from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline

    real_check, real_fit, checks, fitted = (
        TabularModality.early_stopping_check,
        TabularModality.fit_preprocessor,
        [],
        [],
    )

    def scripted(self, pipeline, config):
        if config.modality_options.early_stopping_dcr_ratio is None:  # the refit: no check
            return real_check(self, pipeline, config)
        name, value, _ = real_check(self, pipeline, config)
        checks.append(value)
        return name, value, len(checks) < 3

    def recording_fit(self, dataset, config):
        fitted.append(dataset.to_pandas())
        return real_fit(self, dataset, config)

    monkeypatch.setattr(TabularModality, "early_stopping_check", scripted)
    monkeypatch.setattr(TabularModality, "fit_preprocessor", recording_fit)
    config = early_stopping_config(tmp_path, 0.9, refit_on_all_rows=True)
    result = train(config)
    first = result.holdout_pass
    assert (first.stop_reason, first.global_step, first.restored_step) == ("early_stopping", 6, 4)
    assert result.global_step == 4 and len(result.loss_history) == 4 and result.stop_reason == "max_train_steps"
    assert result.early_stopping_history == [] and len(checks) == 3  # the refit runs no check
    # the first pass fitted on the 142 rows left after the holdout, the refit on all 178, holdout rows included
    _, holdout = TabularModality()._train_and_holdout(config, 10_000)
    assert [len(f) for f in fitted] == [142, 178]
    assert len(holdout) == 36 and len(holdout.merge(fitted[0])) == 0 and len(holdout.merge(fitted[1])) == 36
    record = json.loads((tmp_path / "holdout_pass.json").read_text())
    assert record == {
        "chosen_step": 4,
        "stop_reason": "early_stopping",
        "checks": [[2, checks[0]], [4, checks[1]], [6, checks[2]]],
    }
    assert not (tmp_path / "holdout_pass").exists()
    saved = TabularXAIPipeline.from_pretrained(str(tmp_path))
    assert saved.preprocessor.num_features == result.pipeline.preprocessor.num_features
    refit_weights = result.pipeline.denoiser.state_dict()
    assert all(torch.equal(saved.denoiser.state_dict()[k], refit_weights[k]) for k in refit_weights)


def test_refit_on_all_rows_trains_all_updates_when_no_check_fails(tmp_path):
    result = train(early_stopping_config(tmp_path, 1e-6, refit_on_all_rows=True))
    assert result.holdout_pass.stop_reason == "max_train_steps" and result.holdout_pass.global_step == 8
    assert result.global_step == 8 and [s for s, _ in result.holdout_pass.early_stopping_history] == [2, 4, 6, 8]


def test_refit_on_all_rows_rejects_bad_values(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^`refit_on_all_rows` must be true or false, got 'yes'\.$"):
        early_stopping_config(tmp_path, 0.9, refit_on_all_rows="yes")
    message = (
        "`refit_on_all_rows: true` refits for the number of updates the privacy guard chose, but "
        "early_stopping_dcr_ratio is null: set early_stopping_dcr_ratio (e.g. 0.9) or refit_on_all_rows: false."
    )
    with pytest.raises(ValueError) as err:
        early_stopping_config(tmp_path, None, refit_on_all_rows=True)
    assert str(err.value) == message
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"^`refit_on_all_rows: true` runs in one process, got WORLD_SIZE=2"):
        early_stopping_config(tmp_path, 0.9, refit_on_all_rows=True).validate()


def test_bench_per_pair_trends_names_the_column_whose_pairs_lower_trend():
    """SDMetrics scores the pairs whose real correlation is strong: a, b, c are three noisy copies of one factor."""
    bench = _bench()

    def correlated(n, seed):
        rng = np.random.default_rng(seed)
        z = rng.normal(size=n)
        return pd.DataFrame({k: z + 0.3 * rng.normal(size=n) for k in "abc"})

    real, fresh = correlated(300, 0), correlated(300, 1)
    # `b` drawn apart from the other columns: its two pairs lose their correlation (0.9 real, about 0 synthetic)
    synthetic = fresh.assign(b=fresh["b"].sample(frac=1.0, random_state=0).to_numpy())
    out = bench.per_pair_trends(real, synthetic, infer_metadata(real))
    pairs = {k: v for k, v in out.items() if " | " in k}
    assert set(pairs) == {"a | b", "a | c", "b | c"} and out["__all__"] == pytest.approx(np.mean(list(pairs.values())))
    assert out["a | b"] < 0.6 and out["b | c"] < 0.6 and out["a | c"] > 0.95
    assert out["without:b"] == pytest.approx(out["a | c"]) and out["without:a"] == pytest.approx(out["b | c"])


def test_bench_draws_sample_the_one_trained_model_from_their_own_seeds(monkeypatch):
    """`--draws 2` in both conditional modes: one fit, and each draw's rows from seeds no other draw uses (rejection:
    draw k's round r from seed + k + 100 r; `condition_column`: draw k from seed + 100 k), draw 1 as without it."""
    from sklearn.datasets import load_iris

    bench = _bench()
    real = load_iris(as_frame=True).frame
    seeds, fits = [], []

    def sample_ours(pipe, sampler, n, seed, **kwargs):
        seeds.append(seed)
        rows = real.sample(n, replace=True, random_state=seed).reset_index(drop=True)
        return rows.assign(target=(np.arange(n) + seed) % 3)  # each round holds every class

    def fit(*args, **kwargs):
        fits.append(1)
        return SimpleNamespace(preprocessor=None), 1.0

    monkeypatch.setattr(bench, "fit_ours_from_args", fit)
    monkeypatch.setattr(bench, "sample_ours", sample_ours)
    monkeypatch.setattr(bench, "score", lambda train_df, test_df, synthetic, *a: {"rows": len(synthetic)})
    monkeypatch.setattr(bench, "stop_info", lambda pipe: {})
    args = bench.parse_args(["--draws", "2", "--seed", "3", "--samplers", "ddpm1000"])
    labels = pd.Series([0, 1, 2] * 4)
    rows = bench._rejection_ours("iris", real, real, ["target"], None, labels, args)
    assert list(rows) == ["ours (ddpm1000, rejection)", "ours (ddpm1000, rejection, draw 2)"] and len(fits) == 1
    assert seeds[0] == 3 and seeds[-1] % 100 == 4 and len(set(seeds)) == len(seeds)  # draw 2: seed + 1, + 101, ...
    assert [row["rows"] for row in rows.values()] == [12, 12]  # every draw: the labels' exact counts
    seeds.clear()
    rows = bench._conditioned_ours("iris", real, real, ["target"], None, labels, args)
    assert list(rows) == ["ours (ddpm1000, cond)", "ours (ddpm1000, cond, draw 2)"] and seeds == [3, 103]
    assert all(row == {"rows": len(real), "train_s": 1.0} for row in rows.values())  # as many as the training rows


def test_the_curve_bench_reads_the_update_the_guard_keeps():
    from tests.repo_scripts import load_script

    kept_update = load_script("bench/tabular_curve.py").kept_update
    checks = [(50, 2.0, {}), (100, 1.5, {}), (150, 0.95, {}), (200, 0.85, {}), (250, 0.95, {}), (300, 0.8, {})]
    assert [kept_update(checks, every, 0.9) for every in (50, 100, 150)] == [150, 100, 150]
    assert kept_update(checks, 50, 3.0) is None  # the first check fails
    assert kept_update(checks, 50, 0.1) == 300  # none fails: the run's last check

"""The dashboard's Tabular and Time series tabs, called directly (no server) on their bundled models.

The tabs import public names only (`diffusers_xai.TabularXAIPipeline`, `diffusers_xai.explain.column_attributions`,
...), directly: they are part of this repository, so there is nothing optional to guard.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from diffusers_xai import TabularXAIPipeline, Trace  # noqa: E402
from diffusers_xai.explain import DenoiserAttribution, column_attributions, step_trace  # noqa: E402
from tests.space_fixtures import load_space_app  # noqa: E402


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    module = load_space_app("space_app_modalities")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module.common, "OUTPUT_DIR", tmp_path_factory.mktemp("space_outputs"))
        # `from_pretrained` resolves the saved denoiser classes by module; the package imports them with its pipelines
        importlib.import_module("diffusers_xai.models")
        yield module


@pytest.fixture(scope="module")
def tab(app):
    return app.tabular


@pytest.fixture(scope="module")
def series_tab(app):
    return app.timeseries


# ---------------------------------------------------------------------------------------------------------------
# tabular
# ---------------------------------------------------------------------------------------------------------------
ROWS, STEPS = 40, 10


@pytest.fixture(scope="module")
def table_run(tab):
    return tab.generate(None, "ddim", STEPS, 3, ROWS, tab.RANDOM_LABEL)


def test_tabular_model_info(tab):
    text, classes, _, given = tab.model_info(None)
    assert "13 numerical and 0 categorical column(s)" in text and "conditioned on `cultivar`" in text
    assert [c[1] for c in classes.choices] == [tab.RANDOM_LABEL, "0", "1", "2"]
    assert [c[1] for c in given.choices] == ["any row"]  # wine has no categorical column besides its class


def test_tabular_generate(tab, table_run):
    rows, csv_path, state, slider, preview, caption, targets, info = table_run
    columns = list(rows.columns)
    assert rows.shape == (ROWS, 14) and columns[-1] == "cultivar"
    saved = pd.read_csv(csv_path)
    assert list(saved.columns) == columns and np.allclose(
        saved.drop(columns="cultivar"), rows.drop(columns="cultivar"), atol=1e-3
    )
    trace = Trace.load(state["trace_path"])
    assert tuple(trace.stack("latents").shape) == (STEPS, ROWS, 13)
    assert slider.maximum == STEPS - 1 and preview.shape == (tab.PREVIEW_ROWS, 14)
    assert caption.startswith(f"Step {STEPS} of {STEPS}") and f"{ROWS} row(s)" in info
    assert [c[1] for c in targets.choices] == [tab.ALL_COLUMNS, *columns[:-1]]
    again = tab.generate(None, "ddim", STEPS, 3, ROWS, tab.RANDOM_LABEL)
    assert Path(again[1]).read_text() == Path(csv_path).read_text()  # seeded


def test_tabular_class_condition(tab):
    rows = tab.generate(None, "ddpm", 5, 0, 12, "2")[0]
    assert set(rows["cultivar"]) == {2}


@pytest.fixture
def guided_model(tmp_path, monkeypatch):
    from diffusers_xai.testing import tiny_tabular_pipeline

    path = tmp_path / "guided-wine"
    monkeypatch.setenv("DIFFUSERS_XAI_ALLOWED_MODELS", str(path))  # the Space serves only models its owner allows
    tiny_tabular_pipeline(null_class=True)[0].save_pretrained(path)
    return str(path)


def test_tabular_guidance_slider_moves_only_for_a_model_with_a_null_class(tab, guided_model):
    text, _, slider, _ = tab.model_info(guided_model)
    assert "conditioned on `cultivar` with classifier-free guidance (a null class)." in text
    assert slider.interactive is True and slider.value == 1.0
    text, _, slider, _ = tab.model_info(None)  # the bundled wine model was trained without label dropout
    assert text.endswith("conditioned on `cultivar`.") and slider.interactive is False
    plain = pd.read_csv(tab.generate(guided_model, "ddim", 5, 0, 12, "1", 1.0)[1])
    guided = pd.read_csv(tab.generate(guided_model, "ddim", 5, 0, 12, "1", 3.0)[1])
    assert set(guided["cultivar"]) == {1} and not np.allclose(
        plain.drop(columns="cultivar"), guided.drop(columns="cultivar")
    )
    with pytest.raises(gr.Error, match=r"this denoiser has no null class .* train with a condition_column and class_"):
        tab.generate(None, "ddim", 5, 0, 12, "1", 2.0)
    # Explain explains the guided mix that sampled the rows (the trace records the scale), and says so
    state = tab.generate(guided_model, "ddim", 5, 0, 12, "1", 3.0)[2]
    _, summary, numbers, _ = tab.explain(state, "saliency", "proline", 2)
    assert numbers["guidance_scale"] == 3.0
    assert summary.startswith("**saliency** of the guided prediction (scale 3) at t = ")
    trace = Trace.load(state["trace_path"])
    step = trace.steps[2]
    pipe = TabularXAIPipeline.from_pretrained(guided_model)
    labels = load_file(state["labels_path"])["class_labels"]

    def proline(explainer):
        expl = column_attributions(explainer, step_trace(step.latents.float(), step.timestep), "proline", None, labels)
        return [round(float(v), 6) for v in expl.matrix(0)[0]]

    space = list(numbers["mean_abs_attribution"]["proline"].values())
    assert trace.guidance_scale == 3.0 and space == proline(DenoiserAttribution(pipe, "saliency").guided(3.0))
    assert space != proline(DenoiserAttribution(pipe, "saliency"))
    with pytest.raises(gr.Error, match=r"Guidance scale must be a number in \[1, 4\], got 'lots'\."):
        tab.generate(guided_model, "ddim", 5, 0, 12, "1", "lots")
    with pytest.raises(gr.Error, match=r"Guidance scale must be a number in \[1, 4\], got 4\.5\."):
        tab.generate(guided_model, "ddim", 5, 0, 12, "1", 4.5)


@pytest.fixture
def penguins_model(tmp_path, monkeypatch):
    """A tiny (untrained) model of palmerpenguins conditioned on `species`: island, sex and year are categoricals."""
    import palmerpenguins

    from diffusers_xai.testing import tiny_tabular_pipeline

    path = tmp_path / "penguins"
    monkeypatch.setenv("DIFFUSERS_XAI_ALLOWED_MODELS", str(path))
    tiny_tabular_pipeline(palmerpenguins.load_penguins(), condition_column="species")[0].save_pretrained(path)
    return str(path)


def test_tabular_rows_with_a_given_value_are_one_traced_run(tab, penguins_model):
    """Every row holds the given value; the rows are those the library's per-row rejection keeps (the first draw of
    each row that holds it, `sample_given_values`), written again by one traced run, which Explain then reads."""
    from diffusers_xai.generation import sample_given_values
    from diffusers_xai.modalities import get_modality

    given = tab.model_info(penguins_model)[3]
    levels = ["Biscoe", "Dream", "Torgersen", "female", "male", "2007", "2008", "2009"]
    columns = ["island"] * 3 + ["sex"] * 2 + ["year"] * 3
    assert [c[1] for c in given.choices] == ["any row", *(f"{c} = {v}" for c, v in zip(columns, levels))]
    rows, csv_path, state, *_, info = tab.generate(
        penguins_model, "ddim", 10, 3, 30, tab.RANDOM_LABEL, 1.0, "island = Dream"
    )
    pipe = TabularXAIPipeline.from_pretrained(penguins_model).with_scheduler("ddim")
    pipe.set_progress_bar_config(disable=True)
    settings = {"given_column": "island", "class_labels": ["Dream"], "max_tries": 10, "base_seed": 3}
    kept, _, draws = sample_given_values(get_modality("tabular"), pipe, range(30), 10, settings)
    expected = pd.DataFrame(kept.columns)
    saved = pd.read_csv(csv_path)
    pd.testing.assert_frame_equal(saved, pd.read_csv(io.StringIO(expected.to_csv(index=False))))
    assert set(rows["island"]) == {"Dream"} and max(draws) > 1  # some rows took more than one draw
    assert info.endswith(f"Every row holds island = Dream: kept from {sum(draws)} draws, one row at a time.")
    trace = Trace.load(state["trace_path"])
    assert tuple(trace.stack("latents").shape) == (10, 30, pipe.preprocessor.num_features)
    decoded = pipe.preprocessor.inverse_transform(
        trace.steps[-1].pred_original_sample, load_file(state["labels_path"])["class_labels"]
    )
    assert set(decoded["island"]) == {"Dream"}  # the trace is the kept rows' own run
    assert tab.explain(state, "saliency", tab.ALL_COLUMNS, 5)[2]["rows"] == 30
    # with a class: rows of that class holding the value
    both = tab.generate(penguins_model, "ddim", 10, 0, 8, "Gentoo", 1.0, "island = Torgersen")[0]
    assert set(both["species"]) == {"Gentoo"} and set(both["island"]) == {"Torgersen"}


def test_given_values_offer_the_columns_written_from_others(app):
    """The dropdown offers every column of levels the library can hold rows to: plotly's election's `winner`, written
    as the name of the candidate with most votes, as well as its modelled `result`."""
    import plotly.express as px
    from xai_space import given_values  # importable once the app is loaded

    from diffusers_xai.modalities.tabular import TabularPreprocessor

    choices = given_values.given_choices(TabularPreprocessor.fit(px.data.election()))
    assert list(choices) == [
        "result = majority", "result = plurality", "winner = Bergeron", "winner = Coderre", "winner = Joly"
    ]  # fmt: skip
    assert given_values.parse_given(TabularPreprocessor.fit(px.data.election()), "winner = Joly") == ("winner", "Joly")


def test_tabular_given_value_bad_input(tab, penguins_model, monkeypatch):
    with pytest.raises(gr.Error, match=r"Unknown given value 'island = Mars'; choose one of \['any row', 'island = "):
        tab.generate(penguins_model, "ddim", 10, 0, 12, tab.RANDOM_LABEL, 1.0, "island = Mars")
    with pytest.raises(
        gr.Error,
        match=r"Rows with a given value take up to 10 draws each: steps x rows x draws = 50 x 300 x 10 = 150000 is "
        r"more than this Space runs per request \(100000\); lower the steps or the rows\.",
    ):
        tab.generate(penguins_model, "ddim", 50, 0, 300, tab.RANDOM_LABEL, 1.0, "island = Dream")
    from xai_space import given_values  # importable once the app is loaded

    monkeypatch.setattr(given_values, "MAX_GIVEN_DRAWS", 1)
    with pytest.raises(
        gr.Error, match=r"drew no row with island = 'Torgersen' in 1 draws .* this model writes that value "
    ):
        tab.generate(penguins_model, "ddim", 10, 0, 30, tab.RANDOM_LABEL, 1.0, "island = Torgersen")


def test_tabular_trajectory_explain_commit(tab, table_run):
    state = table_run[2]
    first, caption = tab.show_step(state, 0)
    assert caption.startswith(f"Step 1 of {STEPS}") and not first.equals(table_run[4])
    plot, summary, numbers, archive = tab.explain(state, "integrated_gradients", tab.ALL_COLUMNS, STEPS // 2)
    assert Image.open(plot).size[0] > 0 and numbers["rows"] == ROWS and Path(archive).suffix == ".zip"
    matrix = numbers["mean_abs_attribution"]
    assert len(matrix) == 13 and all(len(row) == 13 for row in matrix.values())
    assert set(numbers["condition"]) == set(matrix)  # the cultivar condition gets an attribution per column
    assert summary.startswith("**integrated_gradients** at t = ")
    one = tab.explain(state, "integrated_gradients", "proline", STEPS // 2)[2]
    assert list(one["mean_abs_attribution"]) == ["proline"]
    plot, summary, fractions = tab.commit(state)
    assert set(fractions) == set(matrix) and max(fractions.values()) > min(fractions.values())
    first, last = min(fractions, key=fractions.get), max(fractions, key=fractions.get)
    assert summary.startswith(f"Earliest to settle: `{first}`; last: `{last}`")  # the summary reads the numbers


def test_tabular_bad_input(tab, table_run):
    with pytest.raises(gr.Error, match="Unknown class '7'"):
        tab.generate(None, "ddim", 5, 0, 10, "7")
    with pytest.raises(gr.Error, match=r"Rows must be an integer in \[1, 500\], got 501"):
        tab.generate(None, "ddim", 5, 0, 501, tab.RANDOM_LABEL)
    with pytest.raises(gr.Error, match="Unknown method 'lime'"):
        tab.explain(table_run[2], "lime", tab.ALL_COLUMNS, 0)
    with pytest.raises(gr.Error, match="Unknown target column 'vintage'"):
        tab.explain(table_run[2], "integrated_gradients", "vintage", 0)
    small = tab.generate(None, "ddim", 2, 0, 5, tab.RANDOM_LABEL)[2]
    with pytest.raises(gr.Error, match="Quality metrics need at least 20 rows"):
        tab.evaluate(small)


@pytest.mark.slow
def test_tabular_quality(tab, table_run):
    summary, plot, report, archive = tab.evaluate(table_run[2])
    assert f"tabular evaluation: {ROWS} generated vs 178 real" in summary
    metrics = {m["key"]: m["value"] for m in report["metrics"]}
    assert metrics["detection_auc"] < 0.9  # the bundled (trained) model's rows are not trivially told from real ones


# ---------------------------------------------------------------------------------------------------------------
# time series
# ---------------------------------------------------------------------------------------------------------------
SERIES = 8


@pytest.fixture(scope="module")
def series_run(series_tab):
    return series_tab.generate(None, "ddim", STEPS, 1, SERIES)


def test_timeseries_generate(series_tab, series_run):
    plot, csv_path, state, slider, step_plot, caption, samples, channels, time, info = series_run
    assert Image.open(plot).size[0] > 0 and Image.open(step_plot).size[0] > 0
    frame = pd.read_csv(csv_path)
    assert frame.shape == (SERIES * 24, 2 + 5) and list(frame.columns[:2]) == ["series", "time"]
    trace = Trace.load(state["trace_path"])
    assert tuple(trace.stack("latents").shape) == (STEPS, SERIES, 5, 24)
    assert slider.maximum == STEPS - 1 and caption.startswith(f"Step {STEPS} of {STEPS}")
    assert [c[1] for c in samples.choices] == list(range(SERIES)) and len(channels.choices) == 6
    assert (time.minimum, time.maximum) == (-1, 23) and f"{SERIES} window(s)" in info


def test_timeseries_trajectory_explain_commit(series_tab, series_run):
    state = series_run[2]
    _, caption = series_tab.show_step(state, 0)
    assert caption.startswith(f"Step 1 of {STEPS}")
    channel = series_run[7].choices[1][1]
    plot, summary, numbers, archive = series_tab.explain(state, "integrated_gradients", 2, channel, 12, STEPS // 2)
    assert numbers["target"] == {"channel": channel, "time": 12} and numbers["sample"] == 2
    assert len(numbers["per_time_step"]) == 24 and len(numbers["per_channel"]) == 5
    assert Image.open(plot).size[0] > 0 and Path(archive).suffix == ".zip"
    per_time = np.array(numbers["per_time_step"])
    assert np.isfinite(per_time).all() and per_time.sum() > 0
    everything = series_tab.explain(state, "integrated_gradients", 2, series_tab.ALL_CHANNELS, -1, STEPS // 2)[2]
    assert everything["target"] == {"channel": series_tab.ALL_CHANNELS, "time": "all"}
    assert not np.allclose(everything["per_time_step"], per_time)  # the target region matters
    for method in ("occlusion", "saliency"):  # the other benchmarked methods (one point per occlusion window)
        numbers = series_tab.explain(state, method, 2, channel, 12, STEPS // 2)[2]
        assert numbers["method"] == method and len(numbers["per_time_step"]) == 24
        # x0_hat[channel, 12] depends most on its own noisy value: the map peaks at that time and channel
        assert int(np.argmax(numbers["per_time_step"])) == 12
        assert max(numbers["per_channel"], key=numbers["per_channel"].get) == channel
    plot, summary, fractions = series_tab.commit(state)
    per_step = np.array(fractions["per_time_step"])
    assert len(per_step) == 24 and per_step.max() > per_step.min()
    assert summary.startswith(f"Time step {per_step.argmin()} settles earliest and time step {per_step.argmax()} last")


def test_timeseries_bad_input(series_tab, series_run):
    with pytest.raises(gr.Error, match=r"Series must be an integer in \[1, 64\], got 65"):
        series_tab.generate(None, "ddim", 5, 0, 65)
    with pytest.raises(gr.Error, match=r"Time step must be an integer in \[-1, 23\], got 24"):
        series_tab.explain(series_run[2], "integrated_gradients", 0, series_tab.ALL_CHANNELS, 24, 0)
    with pytest.raises(gr.Error, match=r"Sample must be an integer in \[0, 7\], got 8"):
        series_tab.explain(series_run[2], "integrated_gradients", 8, series_tab.ALL_CHANNELS, -1, 0)


@pytest.mark.slow
def test_timeseries_quality(series_tab, series_run):
    summary, plot, report, archive = series_tab.evaluate(series_run[2])
    assert f"{SERIES} generated vs 1000 real" in summary

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from diffusers_xai.cli import main
from diffusers_xai.commands.evaluate import _load
from diffusers_xai.evaluation import EvaluationReport, MetricResult
from diffusers_xai.modalities.tabular.data import TABULAR_DATASETS, load_wine_frame
from diffusers_xai.modalities.timeseries import TimeSeriesPreprocessor, TimeSeriesXAIPipeline
from diffusers_xai.modalities.timeseries.data import make_sines
from diffusers_xai.testing import tiny_pipeline, tiny_tabular_pipeline
from tests.test_timeseries_pipeline import tiny_series_denoiser


def test_evaluate_pipeline_on_digits(tmp_path, capsys):
    tiny_pipeline().save_pretrained(tmp_path / "pipe")
    out = tmp_path / "report.json"
    argv = [
        "evaluate",
        "--pipeline",
        str(tmp_path / "pipe"),
        "--data",
        "digits",
        "--num_samples",
        "40",
        "--num_inference_steps",
        "2",
        "--batch_size",
        "16",
        "--out",
        str(out),
        "--no_progress",
    ]
    assert main(argv) == 0
    report = EvaluationReport.load(out)
    assert report.modality == "image" and report.num_generated == 40 and report.num_real == 1797
    assert report["fid"].name == "FID (digits-CNN features)" and report["fid"].value > 0
    assert report.details["source"]["num_inference_steps"] == 2
    assert sorted(p.name for p in (tmp_path / "eval_plots").iterdir()) == [
        "class_histogram.png",
        "nearest_neighbours.png",
        "prdc.png",
    ]
    assert "FID (digits-CNN features)" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["wine", "breast_cancer"])
def test_built_in_tables_are_read_as_the_trainer_reads_them(name):
    """`--data wine` was sklearn's raw frame (`target`, `od280/od315_of_diluted_wines`), so the rows of a
    `dataset_name: wine` run (`cultivar`, `od280_od315`) were refused as having other columns."""
    pd.testing.assert_frame_equal(_load(name), TABULAR_DATASETS[name]())


@pytest.mark.slow
def test_evaluate_saved_table_samples(tmp_path):
    df = load_wine_frame()  # the columns a `dataset_name: wine` run generates
    df.sample(100, random_state=0).to_csv(tmp_path / "synthetic.csv", index=False)
    out = tmp_path / "wine.json"
    argv = ["evaluate", "--samples", str(tmp_path / "synthetic.csv"), "--data", "wine", "--target", "cultivar"]
    assert main([*argv, "--out", str(out), "--no_progress", "--no_sdmetrics_privacy"]) == 0
    data = json.loads(out.read_text())
    keys = {m["key"] for m in data["metrics"]}
    assert data["modality"] == "tabular" and {"quality_score", "tstr", "detection_auc", "dcr_median"} <= keys
    assert "dcr_baseline_protection" not in keys
    assert data["details"]["metadata"]["columns"]["cultivar"] == {"sdtype": "categorical"}


def test_evaluate_saved_windows(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "real.npy", rng.random((60, 12, 2)).astype(np.float32))
    np.save(tmp_path / "fake.npy", rng.random((60, 12, 2)).astype(np.float32))
    out = tmp_path / "ts.json"
    assert (
        main(
            [
                "evaluate",
                "--samples",
                str(tmp_path / "fake.npy"),
                "--data",
                str(tmp_path / "real.npy"),
                "--modality",
                "timeseries",
                "--discriminative_iterations",
                "5",
                "--predictive_iterations",
                "5",
                "--out",
                str(out),
                "--no_progress",
            ]
        )
        == 0
    )
    assert EvaluationReport.load(out).modality == "timeseries"


def test_evaluate_bad_data_spec(tmp_path, capsys):
    argv = ["evaluate", "--samples", str(tmp_path / "nope.npy"), "--data", "digits", "--out", str(tmp_path / "r.json")]
    assert main(argv) == 2  # the CLI turns bad-input errors into one line on stderr
    assert (
        "neither a known dataset (digits, wine, breast_cancer; co2 and sines as --data) nor a file"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(("old", "new"), [("images", "image"), ("table", "tabular"), ("time-series", "timeseries")])
def test_old_modality_names_name_the_new_one(tmp_path, capsys, old, new):
    argv = ["evaluate", "--samples", str(tmp_path / "x.npy"), "--data", "digits", "--modality", old]
    assert main([*argv, "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"diffusers-xai evaluate: error: The modality {old!r} is now called {new!r}; use that name.")
    assert len(err.splitlines()) == 1
    with pytest.raises(ValueError, match=f"is now called {new!r}"):
        EvaluationReport(modality=old)


def test_report_json_round_trip_with_nan(tmp_path):
    report = EvaluationReport(modality="image", num_real=3, num_generated=2, feature_space="digits-CNN")
    report.add("FID (digits-CNN features)", 1.5, key="fid", higher_is_better=False)
    report.add("IS (digits-CNN classifier)", float("nan"), std=float("nan"), key="is")
    text = report.to_json()
    assert "NaN" not in text and json.loads(text)["metrics"][1]["value"] is None
    restored = EvaluationReport.load(report.save(tmp_path / "r.json"))
    assert math.isnan(restored["is"].value) and restored["fid"] == MetricResult(
        "FID (digits-CNN features)", 1.5, None, False, "fid", ""
    )
    assert restored.to_eval_results() == [("FID (digits-CNN features)", 1.5)]
    assert len(restored.to_eval_results(include_nan=True)) == 2
    with pytest.raises(KeyError, match="available keys"):
        restored["kid"]


def test_a_table_models_condition_column_is_the_default_tstr_target(tmp_path):
    """With --pipeline and no --target, TSTR was left out; the end-of-run evaluation scores it on the condition."""
    pipe, frame = tiny_tabular_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    frame.to_csv(tmp_path / "real.csv", index=False)
    argv = ["evaluate", "--pipeline", str(tmp_path / "pipe"), "--data", str(tmp_path / "real.csv")]
    argv += ["--num_samples", "40", "--num_inference_steps", "2", "--no_progress", "--no_sdmetrics_privacy"]
    assert main([*argv, "--out", str(tmp_path / "r.json")]) == 0
    report = EvaluationReport.load(tmp_path / "r.json")
    assert report["tstr"].name == "TSTR macro F1 (HistGradientBoosting, target cultivar)"
    assert main([*argv, "--out", str(tmp_path / "r2.json"), "--target", "alcohol"]) == 0
    assert EvaluationReport.load(tmp_path / "r2.json")["tstr"].name == "TSTR R² (HistGradientBoosting, target alcohol)"


@pytest.mark.parametrize(
    ("name", "fit", "windows"),
    [
        # co2.yaml's cut: 2,284 weeks in windows of 52 every 2 weeks, the gaps interpolated: (2284 - 52) / 2 + 1
        ("co2", {"data": "co2", "sequence_length": 52, "stride": 2, "nan_policy": "interpolate"}, [1117, 52, 1]),
        ("sines", {"data": make_sines(64), "sequence_length": 24}, [10_000, 24, 5]),  # TimeGAN's 10,000 sines
    ],
)
def test_built_in_series_are_cut_as_the_pipeline_was_trained(tmp_path, name, fit, windows):
    """`--data co2` was neither a known dataset nor a file, so co2.yaml's model could not be evaluated by name."""
    pre = TimeSeriesPreprocessor.fit(**fit)
    torch.manual_seed(0)
    denoiser = tiny_series_denoiser(windows[2], windows[1], "conv", width=8)
    TimeSeriesXAIPipeline.from_denoiser(denoiser, pre, "ddim", num_train_timesteps=20).save_pretrained(tmp_path / "p")
    argv = ["evaluate", "--pipeline", str(tmp_path / "p"), "--data", name, "--out", str(tmp_path / "r.json")]
    argv += ["--num_samples", "8", "--num_inference_steps", "2", "--no_progress"]
    assert main([*argv, "--discriminative_iterations", "2", "--predictive_iterations", "2"]) == 0
    report = EvaluationReport.load(tmp_path / "r.json")
    assert report.modality == "timeseries" and report.num_real == windows[0] and report.num_generated == 8
    assert report.details["window_shape"] == windows[1:]

"""The end of a training run: `eval_samples` evaluation, the explanation card and `--push_to_hub` through the local
Hub server (real huggingface_hub / diffusers code paths), for images, tables and time series."""

import json
import os

import pytest
import torch
import yaml
from huggingface_hub import ModelCard, metadata_load, snapshot_download

from diffusers_xai import DiffusionXAIPipeline
from diffusers_xai.evaluation import EvaluationReport
from diffusers_xai.hub import SUMMARY_PATH, HubPushError
from diffusers_xai.hub.files import upload_allow_list
from diffusers_xai.training import TrainingConfig, train
from tests import hub_fixtures
from tests.test_tabular_training import TINY as TINY_TABLE
from tests.test_timeseries_pipeline import TINY as TINY_SERIES
from tests.test_training import TINY, _write_config, tiny

# the card machinery is exercised with map methods named explicitly: the modality defaults keep only the methods
# that passed their checks (diffusers_xai/explain/verdicts.json), which may be none
CARD_METHODS = ["trajectory", "gradcam", "saliency", "integrated_gradients"]

local_hub = hub_fixtures.local_hub  # registers the fixture in this module


def samples(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=3, generator=torch.Generator().manual_seed(0), num_inference_steps=4, output_type="np")


def tree(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder) for root, _, names in os.walk(folder) for name in names
    )


def test_push_to_hub_uploads_the_full_explanation_card_and_round_trips(local_hub, tmp_path, caplog):
    repo_id = f"{local_hub.user}/tiny-digits"
    out = tmp_path / "run"
    config = tiny(
        out,
        max_train_steps=4,
        checkpointing_steps=2,
        validation_num_inference_steps=4,
        eval_samples=64,
        push_to_hub=True,
        hub_model_id=repo_id,
        hub_private_repo=True,
        explain_methods=CARD_METHODS,
    )
    result = train(config)

    # evaluation: written, returned and equal to the card's model-index
    report = EvaluationReport.load(out / "evaluation" / "report.json")
    assert result.evaluation.to_dict() == report.to_dict() and report.num_generated == 64
    assert result.commit_url and local_hub.head(repo_id) and local_hub.is_private(repo_id)

    # the repo: pipeline, card, figures, summary, config, community file; no checkpoints
    files = local_hub.list_files(repo_id)
    for path in (
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
        "README.md",
        "explanations/summary.json",
        "explanations/gradcam_overlay.png",
        "explanations/integrated_gradients_overlay.png",
        "explanations/trajectory_strip.png",
        "explanations/faithfulness.png",
        "explanations/sanity_checks.png",
        "explanations/evaluation_nearest_neighbours.png",
        "evaluation/report.json",
        "samples/grid.png",
        "training_config.yaml",
        "diffusion_xai.py",
    ):
        assert path in files, path
    assert not [f for f in files if f.startswith("checkpoint-")]
    # exactly the allow-list: what the card links to plus the pipeline files; never checkpoints or other files
    assert set(files) - {".gitattributes"} == set(upload_allow_list(out, SUMMARY_PATH, ("diffusion_xai.py",)))
    assert "explanations/explanations.json" in tree(out) and "explanations/explanations.json" not in files

    # bit-identical samples from the Hub copy
    downloaded = DiffusionXAIPipeline.from_pretrained(repo_id)
    assert (samples(downloaded).images == samples(result.pipeline).images).all()

    # the card's metadata, validated by the server, with honest metric names and the evaluation's values
    card = ModelCard.load(repo_id)
    card.validate()
    meta = card.data.to_dict()
    assert {"diffusers-xai", "explainability", "synthetic-data", "image", "diffusers-training"} <= set(meta["tags"])
    # the digits have labels, so the model is class-conditional: no Hub task fits it (as for DiT), a tag says so
    assert meta["library_name"] == "diffusers" and "pipeline_tag" not in meta and "class-conditional" in meta["tags"]
    metrics = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    # the FID of samples of the digits in turn, and the null class's apart (not the FID of the null class alone)
    fid = "FID (digits-CNN features, class-conditional samples, 10 classes in turn, guidance 1)"
    assert metrics[fid] == pytest.approx(report["fid"].value) and report["fid"].name == fid
    null_fid = "FID (digits-CNN features, unconditional null-class samples)"
    assert metrics[null_fid] == pytest.approx(report["fid_null_class"].value)
    assert metrics["Memorised fraction (pixel space, Carlini ℓ < 0.33)"] == report["memorized_fraction_pixel"].value
    text = card.text
    for section in ("## Faithfulness and sanity checks", "## Memorisation check", "## Evaluation", "optimizer steps"):
        assert section in text, section
    assert "Not available for this checkpoint" not in text
    summary = json.loads(local_hub.read(repo_id, "explanations/summary.json"))
    # attention maps are off the image defaults: worse than random maps on deletion/insertion (verdicts.json)
    assert set(summary["faithfulness"]) == {"gradcam", "saliency", "integrated_gradients"}
    # the pushed numbers are the run's own (the local summary), and the sanity check really produced a correlation
    local = json.loads((out / "explanations" / "summary.json").read_text())
    assert summary["sanity_checks"] == local["sanity_checks"] and summary["faithfulness"] == local["faithfulness"]
    assert isinstance(summary["sanity_checks"]["gradcam"]["spearman"], float)
    assert summary["missing_sections"] == []
    # the saved config retrains the same run, and no file or log holds the token
    saved = yaml.safe_load(local_hub.read(repo_id, "training_config.yaml"))
    assert TrainingConfig.from_dict(saved).to_dict() == config.to_dict() and "hub_token" not in saved
    snapshot = snapshot_download(repo_id, local_dir=tmp_path / "snapshot")
    for folder in (out, snapshot):
        for path in tree(folder):
            assert local_hub.token.encode() not in open(os.path.join(folder, path), "rb").read(), path
    assert local_hub.token not in caplog.text and local_hub.token not in repr(config)


def test_push_needs_a_token_before_training_starts(local_hub, tmp_path, monkeypatch):
    hub_fixtures.point_hf_at(local_hub.endpoint, None, tmp_path / "cache", monkeypatch)
    out = tmp_path / "run"
    config = tiny(out, max_train_steps=2, push_to_hub=True)
    with pytest.raises(ValueError, match="No Hugging Face token found"):
        train(config)
    assert not (out / "model_index.json").exists()
    with pytest.raises(ValueError, match="Invalid repo_id 'not a repo'"):
        TrainingConfig(**TINY, push_to_hub=True, hub_model_id="not a repo")


def test_failed_push_keeps_the_trained_pipeline_and_card(local_hub, tmp_path):
    repo_id = f"{local_hub.user}/tiny-digits"
    out = tmp_path / "run"
    local_hub.inject("POST", r"/commit/", status=500)
    config = tiny(out, max_train_steps=2, push_to_hub=True, hub_model_id=repo_id, explain_methods=CARD_METHODS)
    with pytest.raises(HubPushError, match=f"diffusers-xai push {out} --repo-id {repo_id}"):
        train(config)
    assert local_hub.list_files(repo_id) == [".gitattributes"]
    saved = DiffusionXAIPipeline.from_pretrained(out)  # complete: the push failed after the save
    assert "explanations/gradcam_overlay.png" in tree(out) and (out / "README.md").is_file()
    # the retry the error message suggests uploads the same folder
    from diffusers_xai.cli import main as cli_main

    assert cli_main(["push", str(out), "--repo-id", repo_id]) == 0
    assert (samples(DiffusionXAIPipeline.from_pretrained(repo_id)).images == samples(saved).images).all()


def test_card_without_explanations_names_what_is_missing(tmp_path):
    out = tmp_path / "run"
    train(tiny(out, max_train_steps=2, explanation_card=False))
    card = ModelCard.load(out / "README.md")
    assert "Not available for this checkpoint:** sample grid, explanation figures" in card.text
    assert not (out / "explanations" / "gradcam_overlay.png").exists()
    with pytest.raises(
        ValueError, match=r"`explain_methods` \['gradcam', 'commit_steps'\] are not methods of the image"
    ):
        TrainingConfig(**TINY, explain_methods=["gradcam", "commit_steps"])


def test_tabular_run_card_has_column_attributions_sanity_check_and_table_metrics(tmp_path):
    out = tmp_path / "wine"
    config = TrainingConfig.from_dict(
        {
            **TINY_TABLE,
            "dataset_name": "wine",
            "condition_column": "cultivar",
            "max_train_steps": 6,
            "validation_num_inference_steps": 5,
            "eval_samples": 100,
            "explain_methods": ["integrated_gradients", "shap", "commit_steps"],
            "output_dir": str(out),
        }
    )
    result = train(config)
    report = result.evaluation
    assert report.modality == "tabular" and report.num_generated == 100 and report.num_real == 178
    # 6 steps of training: rows that a detector tells from real ones, scored as such, and the same numbers on disk
    assert report["detection_auc"].value > 0.9 and report["quality_score"].value < 0.9
    assert EvaluationReport.load(out / "evaluation" / "report.json").to_dict() == report.to_dict()
    assert "tstr" in report  # TSTR on the condition column
    summary = json.loads((out / "explanations" / "summary.json").read_text())
    assert set(summary["figures"]) >= {"integrated_gradients", "shap", "commit_steps"}
    assert summary["explainers"]["shap"]["num_samples"] == 16
    ig = summary["faithfulness"]["integrated_gradients"]
    # IG's completeness: the Riemann gap is small next to the attributions it explains
    assert ig["completeness_error_mean_abs"] < 0.1 * ig["attribution_sum_mean_abs"]
    for method in ("integrated_gradients", "shap"):
        assert -1 <= summary["sanity_checks"][method]["spearman_vs_randomized_model"] <= 1
    meta = metadata_load(out / "README.md")
    assert "tabular" in meta["tags"] and "pipeline_tag" not in meta
    names = {m["name"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert report["quality_score"].name in names
    assert meta["model-index"][0]["results"][0]["task"]["type"] == "tabular-generation"


def test_timeseries_run_card_has_attributions_and_commit_steps(tmp_path):
    out = tmp_path / "sines"
    config = TrainingConfig.from_dict(
        {
            **TINY_SERIES,
            "dataset_name": "sines",
            "num_series": 64,
            "validation_num_inference_steps": 5,
            "output_dir": str(out),
            "explain_methods": ["integrated_gradients", "commit_steps"],
        }
    )
    train(config)
    summary = json.loads((out / "explanations" / "summary.json").read_text())
    assert summary["modality"] == "timeseries"
    assert set(summary["figures"]) == {"integrated_gradients", "commit_steps"}
    assert summary["explainers"]["integrated_gradients"]["num_samples"] == 16
    ig = summary["faithfulness"]["integrated_gradients"]
    # IG's completeness: the Riemann gap is small next to the attributions it explains
    total = ig["attribution_sum_mean_abs"]
    assert total > 0 and ig["completeness_error_mean_abs"] < 0.1 * total
    assert (out / "explanations" / "commit_steps.png").stat().st_size > 1000


def test_train_command_eval_samples_flag(tmp_path, capsys):
    from diffusers_xai.cli import main

    config = _write_config(tmp_path)
    assert main(["train", "--config", config, "--max_train_steps", "2", "--eval_samples", "32"]) == 0
    report = EvaluationReport.load(tmp_path / "out" / "evaluation" / "report.json")
    assert report.num_generated == 32 and "fid" in report
    assert main(["train", "--config", config, "--eval_samples", "0"]) == 2
    assert "`eval_samples` must be" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["image", "tabular", "timeseries"])
def test_default_methods_are_those_that_passed_their_checks(name):
    from diffusers_xai.explain import DEFAULT_METHODS
    from diffusers_xai.explain.verdicts import method_verdicts
    from diffusers_xai.modalities import get_modality

    modality = get_modality(name)
    verdicts = method_verdicts(name)
    defaults = modality.default_explain_methods
    failed = {m for m, v in verdicts.items() if not v.get("passed")}
    assert not failed & set(defaults)  # every failing method is off the defaults (series: none fails today)
    assert {m for m in defaults if m in verdicts} == {
        m for m in verdicts if m not in failed and m in modality.explain_methods
    }
    assert defaults[0] == ("trajectory" if name == "image" else "commit_steps")  # analyses without maps stay on
    if name == "image":
        assert DEFAULT_METHODS == tuple(defaults)

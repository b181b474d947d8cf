"""Explanation cards rendered from our template: metadata, sections, files, redaction and bad input (offline)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from huggingface_hub import EvalResult, ModelCard, metadata_load

from diffusers_xai import hub
from diffusers_xai.testing import tiny_pipeline
from tests.hub_fixtures import write_png


@pytest.fixture
def full_card(tmp_path):
    figs = tmp_path / "figs"
    figs.mkdir()
    return hub.ExplanationCardData(
        training={"dataset": "sklearn digits 8x8", "num_examples": 1797, "config": {"learning_rate": 1e-3}},
        samples=write_png(figs / "grid.png", 1),
        figures={
            "gradcam": write_png(figs / "g.png", 2),
            "attention": {"path": write_png(figs / "a.png", 3), "caption": "Mid-block self-attention at t=50"},
        },
        explainers={"gradcam": {"layer": "mid_block.resnets.1", "timesteps": [99, 50]}},
        faithfulness={"deletion_auc": 0.2125, "insertion_auc": np.float32(0.75)},
        sanity_checks={"model_randomization": {"spearman": 0.05}},
        memorization={"nn_l2_min": 1.25, "copies": 0},
        eval_results=[
            {
                "metric_type": "fid",
                "metric_value": 12.5,
                "feature_extractor": "digits-cnn 64-d",
                "dataset_split": "test",
            }
        ],
        reproduce="```bash\ndiffusers-xai explain outputs/digits\n```",
    )


def test_card_metadata_and_sections(pipe, full_card, tmp_path):
    card = hub.save_explanation_card(tmp_path / "out", pipe, full_card, repo_id="me/tiny-digits")
    meta = metadata_load(tmp_path / "out" / "README.md")
    assert meta["library_name"] == "diffusers"
    assert meta["pipeline_tag"] == "unconditional-image-generation"
    assert meta["tags"] == ["diffusers-xai", "explainability", "synthetic-data", "image"]
    assert meta["license"] == "apache-2.0"
    (result,) = meta["model-index"][0]["results"]
    assert meta["model-index"][0]["name"] == "tiny-digits"
    assert result["task"]["type"] == "unconditional-image-generation"
    # the dataset defaults to the training dataset; the metric name says which network made the features
    assert result["dataset"] == {"name": "sklearn digits 8x8", "type": "sklearn digits 8x8", "split": "test"}
    assert result["metrics"] == [{"type": "fid", "value": 12.5, "name": "fid (digits-cnn 64-d features)"}]

    text = card.text
    for heading in (
        "## Model and scheduler",
        "## Training data and config",
        "## Samples",
        "## Explanations",
        "## Faithfulness and sanity checks",
        "## Memorisation check",
        "## Evaluation",
        "## Intended use",
        "## Limitations",
        "## How to load",
        "## How to reproduce the figures",
    ):
        assert heading in text
    assert "Not available" not in text
    assert "| `unet` | `UNet2DModel` | 11,621 |" in text  # parameter count of the tiny UNet
    assert "num_train_timesteps=100" in text
    assert "![Sample grid](samples/grid.png)" in text
    assert "![attention](explanations/attention.png)" in text and "Mid-block self-attention at t=50" in text
    assert "| faithfulness | insertion_auc | 0.75 |" in text
    assert "| sanity check | model_randomization/spearman | 0.05 |" in text
    assert 'DiffusionXAIPipeline.from_pretrained("me/tiny-digits")' in text
    assert "custom_pipeline" not in text  # no community file was shipped with this card
    # the rendered Markdown table has no blank line in its middle
    table = text.split("| Check | Metric | Value |")[1].split("\n\n")[0]
    assert table.count("\n|") == 4


def test_missing_sections_are_named(pipe, tmp_path):
    card = hub.save_explanation_card(tmp_path, pipe, None, repo_id="me/bare")
    expected = [
        "training data and config",
        "sample grid",
        "explanation figures",
        "explained layers and methods",
        "faithfulness",
        "sanity checks",
        "memorisation check",
        "evaluation results",
        "how to reproduce",
    ]
    assert f"**Not available for this checkpoint:** {', '.join(expected)}." in card.text
    assert card.text.count("_Not available._") == 7  # one per empty section
    summary = json.loads((tmp_path / hub.SUMMARY_PATH).read_text())
    assert summary["missing_sections"] == expected
    assert "model-index" not in card.data.to_dict()


def test_saved_files_and_summary_roundtrip(pipe, full_card, tmp_path):
    out = tmp_path / "out"
    card = hub.save_explanation_card(out, pipe, full_card, repo_id="me/tiny-digits", community_file="diffusion_xai")
    assert (out / "explanations" / "gradcam.png").read_bytes() == full_card.figures["gradcam"].read_bytes()
    assert (out / "explanations" / "attention.png").read_bytes() == full_card.figures["attention"]["path"].read_bytes()
    assert (out / "samples" / "grid.png").read_bytes() == full_card.samples.read_bytes()
    assert ModelCard.load(out / "README.md").text == card.text
    assert not list(out.rglob("*.tmp"))

    summary = json.loads((out / hub.SUMMARY_PATH).read_text())
    assert summary["format"] == "diffusers-xai/explanation-card"
    assert summary["repo_id"] == "me/tiny-digits"
    assert summary["modality"] == "image"
    assert summary["figures"] == {
        "gradcam": {"path": "explanations/gradcam.png", "caption": "gradcam"},
        "attention": {"path": "explanations/attention.png", "caption": "Mid-block self-attention at t=50"},
    }
    assert summary["faithfulness"] == {"deletion_auc": 0.2125, "insertion_auc": 0.75}
    assert summary["pipeline"]["components"]["unet"]["num_parameters"] == 11621
    assert summary["pipeline"]["components"]["scheduler"]["config"]["num_train_timesteps"] == 100
    assert summary["missing_sections"] == []

    # the summary alone re-renders the same card (what `diffusers-xai push DIR` relies on)
    again = hub.explanation_card(
        pipe, hub.load_explanation_card_data(out), repo_id="me/tiny-digits", community_file="diffusion_xai"
    )
    assert again.text == card.text
    assert 'custom_pipeline="diffusion_xai", trust_remote_code=True' in card.text


def test_summary_from_saved_folder_matches_live_pipeline(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    from_dir, from_obj = hub.summarize_pipeline(tmp_path), hub.summarize_pipeline(pipe)
    assert from_dir["class_name"] == from_obj["class_name"] == "DiffusionXAIPipeline"
    for name in ("unet", "scheduler"):
        assert from_dir["components"][name]["class_name"] == from_obj["components"][name]["class_name"]
        assert from_dir["components"][name]["num_parameters"] == from_obj["components"][name]["num_parameters"]
        assert from_dir["components"][name]["config"] == from_obj["components"][name]["config"]
    assert from_obj["components"]["unet"]["num_parameters"] == sum(p.numel() for p in pipe.unet.parameters())


def test_secrets_in_training_config_are_dropped(pipe, tmp_path):
    card = hub.ExplanationCardData(
        training={
            "dataset": "digits",
            "config": {"hub_token": "hf_shouldNotLeak1", "wandb": {"api_key": "hf_shouldNotLeak2"}, "lr": 0.1},
        }
    )
    hub.save_explanation_card(tmp_path, pipe, card)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"shouldNotLeak" not in path.read_bytes(), path
    assert json.loads((tmp_path / hub.SUMMARY_PATH).read_text())["training"]["config"] == {"wandb": {}, "lr": 0.1}


def test_class_conditional_model_has_no_unconditional_pipeline_tag(tmp_path):
    # the Hub has no class-conditional task; diffusers' DiT checkpoints carry no pipeline_tag, and neither do ours
    from diffusers import DDIMScheduler

    from diffusers_xai import DiffusionXAIPipeline
    from diffusers_xai.testing import tiny_unet

    conditional = DiffusionXAIPipeline(unet=tiny_unet(num_classes=3), scheduler=DDIMScheduler(num_train_timesteps=50))
    eval_results = [{"metric_type": "fid", "metric_value": 1.5, "feature_extractor": "digits-cnn 64-d"}]
    card = hub.explanation_card(conditional, {"training": {"dataset": "digits"}, "eval_results": eval_results})
    assert card.data.pipeline_tag is None
    assert card.data.tags == ["diffusers-xai", "explainability", "synthetic-data", "image", "class-conditional"]
    assert card.data.eval_results[0].task_type == "image-generation"
    # a saved folder is read from its config the same way; an explicit tag still wins
    conditional.save_pretrained(tmp_path / "saved")
    assert hub.explanation_card(tmp_path / "saved").data.pipeline_tag is None
    assert hub.explanation_card(conditional, {"pipeline_tag": "text-to-image"}).data.pipeline_tag == "text-to-image"
    # the unconditional model keeps the Hub task it fits
    plain = hub.explanation_card(tiny_pipeline())
    assert plain.data.pipeline_tag == "unconditional-image-generation" and "class-conditional" not in plain.data.tags


def test_modality_tags(pipe):
    card = hub.explanation_card(pipe, {"modality": "tabular", "tags": ["wine"]})
    assert card.data.tags == ["diffusers-xai", "explainability", "synthetic-data", "tabular", "wine"]
    assert card.data.pipeline_tag is None  # no Hub task fits tabular generation honestly
    assert "A tabular diffusion model" in card.text
    with pytest.raises(ValueError, match="modality must be one of"):
        hub.explanation_card(pipe, {"modality": "audio"})
    with pytest.raises(ValueError, match="^The modality 'time-series' is now called 'timeseries'; use that name.$"):
        hub.explanation_card(pipe, {"modality": "time-series"})
    card = hub.explanation_card(pipe, {"modality": "timeseries"})
    assert "timeseries" in card.data.tags and "A time-series diffusion model" in card.text
    with pytest.raises(ValueError, match="Pass modality="):
        hub.explanation_card(None, None)


def _limitations(card) -> str:
    return card.text.split("## Limitations\n\n")[1].split("\n\n## How to load")[0]


def test_tabular_card_says_what_posterior_levels_store(tmp_path):
    from diffusers_xai.testing import tiny_tabular_pipeline

    # 40 states (> 32 levels: analog bits) of 3 airports each, coordinates by state: `state` is decoded by its
    # posterior (per-level statistics)
    rng = np.random.default_rng(0)
    level = np.repeat(np.arange(40), 3)
    frame = pd.DataFrame(
        {
            "lat": level // 8 + rng.uniform(size=120),
            "lon": level % 8 + rng.uniform(size=120),
            "state": [f"s{i:02d}" for i in level],
        }
    )
    airports, _ = tiny_tabular_pipeline(frame, condition_column=None)
    assert "level_stats" in airports.preprocessor.categorical[0]
    paragraphs = _limitations(hub.explanation_card(airports)).split("\n\n")
    assert paragraphs[0] == hub.card.DEFAULT_LIMITATIONS and len(paragraphs) == 2
    assert paragraphs[1].startswith(
        "The level of `state` is drawn from the generated row's numbers after the denoiser"
    )
    assert "mean and variance of the numerical columns over its training rows" in paragraphs[1]
    # a user's own limitations text keeps the note; wine (no such column) and a saved folder have none
    own = _limitations(hub.explanation_card(airports, {"limitations": "Toy data."})).split("\n\n")
    assert own[0] == "Toy data." and own[1] == paragraphs[1]
    wine, _ = tiny_tabular_pipeline()
    assert _limitations(hub.explanation_card(wine)) == hub.card.DEFAULT_LIMITATIONS
    airports.save_pretrained(tmp_path)
    assert _limitations(hub.explanation_card(str(tmp_path))) == hub.card.DEFAULT_LIMITATIONS


def test_eval_result_objects_pass_through(pipe):
    result = EvalResult(
        task_type="unconditional-image-generation",
        dataset_type="digits",
        dataset_name="digits",
        metric_type="precision",
        metric_value=0.5,
        metric_name="precision (k=3, digits-cnn features)",
    )
    card = hub.explanation_card(pipe, {"eval_results": [result]}, repo_id="me/x")
    assert card.data.eval_results == [result]
    assert "| precision (k=3, digits-cnn features) | 0.5 | digits |  |" in card.text


@pytest.mark.parametrize(
    "card, error, match",
    [
        ({"figures": {"gradcam": "/nonexistent/g.png"}}, ValueError, "does not exist"),
        ({"figures": {"../evil": "x.png"}}, ValueError, "not a valid file name"),
        ({"figures": {"a": {"caption": "no path"}}}, ValueError, "without a 'path' key"),
        ({"samples": "/nonexistent/grid.png"}, ValueError, "does not exist"),
        ({"eval_results": [{"metric_type": "fid", "metric_value": 3.0, "dataset_name": "d"}]}, ValueError, "feature"),
        (
            {"eval_results": [{"metric_type": "l2", "metric_value": math.nan, "dataset_name": "d"}]},
            ValueError,
            "finite",
        ),
        ({"eval_results": [{"metric_type": "l2", "metric_value": 1.0}]}, ValueError, "dataset_name"),
        ({"eval_results": ["fid=3"]}, TypeError, "EvalResult or dict"),
        ({"faithfulnes": {"x": 1}}, ValueError, "Unknown explanation card field"),
    ],
)
def test_bad_card_input(pipe, card, error, match, tmp_path):
    with pytest.raises(error, match=match):
        hub.save_explanation_card(tmp_path / "out", pipe, card)
    assert not (tmp_path / "out").exists()  # validated before anything is written


def test_non_png_figure_and_wrong_card_type(pipe, tmp_path):
    (tmp_path / "fig.jpg").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="must be a PNG"):
        hub.explanation_card(pipe, {"figures": {"gradcam": tmp_path / "fig.jpg"}})
    with pytest.raises(TypeError, match="ExplanationCardData, a dict or None"):
        hub.explanation_card(pipe, ["faithfulness"])
    with pytest.raises(ValueError, match="no model_index.json"):
        hub.summarize_pipeline(tmp_path)


def test_tabular_card_says_which_columns_are_drawn_outside_the_model():
    """Columns drawn from their training frequencies (`marginal_columns`) are named in the card's limitations: not
    generated by the denoiser, not explained, and published with their training values in the preprocessor config."""
    from diffusers_xai.testing import tiny_tabular_pipeline

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=60), "name": [f"N{i % 50}" for i in range(60)]})
    pipe, _ = tiny_tabular_pipeline(frame, condition_column=None, marginal_columns="auto")
    paragraphs = _limitations(hub.explanation_card(pipe)).split("\n\n")
    assert paragraphs[0] == hub.card.DEFAULT_LIMITATIONS and len(paragraphs) == 2
    assert paragraphs[1].startswith("`name` is not generated by the denoiser: each row draws its value from the ")
    assert "publishing the model publishes those values (names, addresses)" in paragraphs[1]
    modelled, _ = tiny_tabular_pipeline(frame, condition_column=None)
    assert _limitations(hub.explanation_card(modelled)) == hub.card.DEFAULT_LIMITATIONS

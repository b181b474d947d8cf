"""Per-method verdicts of the faithfulness benchmark: reading them, their markdown, and the card's verdict table."""

import json

import pytest

from diffusers_xai.explain.verdicts import (
    load_verdicts,
    method_verdicts,
    passing_methods,
    verdict_rows,
    verdict_table,
)
from diffusers_xai.hub import ExplanationCardData, explanation_card
from diffusers_xai.testing import tiny_pipeline


def _ci(mean, low, high):
    return {"mean": mean, "ci_low": low, "ci_high": high, "confidence": 0.95, "n": 96, "passed": low > 0}


REPORT = {
    "command": "python bench/explain_faithfulness.py --samples 32",
    "conditions": {"n_random": 8, "n_boot": 2000, "planted_samples": 64},
    "modalities": {
        "image": {
            "model": "spaces/digits-ddpm",
            "samples": 32,
            "timesteps": [741, 501, 241],
            "inference_steps": 50,
            "methods": {
                "saliency": {
                    "passed": True,
                    "faithfulness": {"deletion_gain": _ci(0.21, 0.12, 0.3), "insertion_gain": _ci(0.3, 0.2, 0.41)},
                    "randomization": {"spearman_full": 0.08, "passed": True},
                    "planted": {"value": 0.92, "passed": True},
                },
                "attention": {
                    "passed": False,
                    "faithfulness": {"deletion_gain": _ci(-0.01, -0.05, 0.03), "insertion_gain": _ci(0.0, -0.1, 0.1)},
                    "randomization": {"spearman_full": 0.61, "passed": False},
                    "planted": {"value": 0.25, "passed": False},
                    "settings": {"layer": "output_block", "weighting": "hirescam"},
                },
                "shap": {"passed": False, "error": "ValueError: no layer"},
            },
        }
    },
}


@pytest.fixture
def report_path(tmp_path):
    path = tmp_path / "verdicts.json"
    path.write_text(json.dumps(REPORT))
    return path


def test_verdicts_read_back(report_path):
    assert load_verdicts(report_path)["command"] == REPORT["command"]
    assert passing_methods("image", report_path) == ("saliency",)
    assert list(method_verdicts("image", report_path)) == ["saliency", "attention", "shap"]
    assert method_verdicts("tabular", report_path) == {}
    with pytest.raises(ValueError, match="`modality` must be one of .* got 'images'"):
        method_verdicts("images", report_path)


def test_verdict_rows_and_table(report_path):
    rows = verdict_rows("image", path=report_path)
    assert rows[0] == {
        "method": "saliency",
        "deletion": "pass: +0.210 [+0.120, +0.300]",
        "insertion": "pass: +0.300 [+0.200, +0.410]",
        "randomization": "pass: 0.080",
        "planted": "pass: 0.920",
        "verdict": "pass",
    }
    assert rows[1]["deletion"] == "fail: -0.010 [-0.050, +0.030]" and rows[1]["verdict"] == "fail"
    assert rows[2]["verdict"] == "fail (ValueError: no layer)"
    assert verdict_rows("image", ["gradcam"], report_path)[0]["verdict"] == "not benchmarked"
    table = verdict_table("image", path=report_path)
    assert (
        "| attention | fail: -0.010 [-0.050, +0.030] | fail: +0.000 [-0.100, +0.100] | fail: 0.610 | fail: 0.250 "
        in table
    )
    assert "32 generated samples × timesteps [741, 501, 241] of 50 DDIM steps" in table
    assert f"(`{REPORT['command']}`)" in table
    assert verdict_table("tabular", path=report_path) == "No benchmarked verdicts for the tabular modality."
    assert "(magnitude)" not in table  # every map here was scored by the signed protocol
    assert "Settings: attention: layer=output_block, weighting=hirescam." in table  # the variant that was measured
    assert "Settings" not in verdict_table("image", ["saliency"], report_path)


def test_unsigned_maps_are_marked_as_scored_by_the_magnitude_protocol(tmp_path, monkeypatch):
    report = json.loads(json.dumps(REPORT))
    report["modalities"]["image"]["methods"]["saliency"]["faithfulness"]["protocol"] = "magnitude"
    path = tmp_path / "verdicts.json"
    path.write_text(json.dumps(report))
    rows = verdict_rows("image", path=path)
    assert rows[0]["deletion"] == "pass: +0.210 [+0.120, +0.300] (magnitude)"
    assert rows[0]["insertion"] == "pass: +0.300 [+0.200, +0.410] (magnitude)"
    assert rows[1]["deletion"] == "fail: -0.010 [-0.050, +0.030]"  # a signed map keeps the plain cell
    assert "(magnitude): an unsigned map" in verdict_table("image", path=path)
    from diffusers_xai.explain import verdicts

    monkeypatch.setattr(verdicts, "VERDICTS_PATH", path)
    card = explanation_card(tiny_pipeline(), ExplanationCardData(explainers={"saliency": {"timesteps": [50]}}))
    assert "(magnitude): an unsigned map" in card.text


def test_missing_verdicts_file_means_no_verdicts(tmp_path):
    assert load_verdicts(tmp_path / "absent.json")["modalities"] == {}
    assert passing_methods("image", tmp_path / "absent.json") == ()


def test_card_shows_given_verdicts_and_warnings():
    rows = [{"method": "saliency", "deletion": "pass: +0.2 [+0.1, +0.3]", "verdict": "pass"}]
    warning = "saliency: the maps of a fully randomised model are nearly those of the trained one"
    card = explanation_card(
        tiny_pipeline(),
        ExplanationCardData(verdicts=rows, sanity_checks={"saliency": {"spearman": 0.95, "warning": warning}}),
    )
    assert "### Per-method verdicts" in card.text
    assert "| saliency | pass: +0.2 [+0.1, +0.3] | – | – | – | **pass** |" in card.text
    assert f"> **Warning:** {warning}" in card.text


def test_card_defaults_to_the_benchmark_verdicts(monkeypatch, report_path):
    from diffusers_xai.explain import verdicts

    monkeypatch.setattr(verdicts, "VERDICTS_PATH", report_path)
    card = explanation_card(tiny_pipeline(), ExplanationCardData(explainers={"saliency": {"timesteps": [50]}}))
    assert (
        "| saliency | pass: +0.210 [+0.120, +0.300] | pass: +0.300 [+0.200, +0.410] | pass: 0.080 | pass: 0.920 "
        in (card.text)
    )
    assert "| attention |" in card.text and "**fail**" in card.text  # failing methods are shown failing
    assert f"Measured by `{REPORT['command']}` on the bundled `spaces/digits-ddpm` model" in card.text
    assert "Methods explained on this card: saliency." in card.text


def test_space_explain_tabs_show_the_verdicts(monkeypatch, report_path):
    pytest.importorskip("gradio")
    from pathlib import Path

    from diffusers_xai.explain import verdicts

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "spaces"))
    from xai_space.common import verdicts_markdown

    monkeypatch.setattr(verdicts, "VERDICTS_PATH", report_path)
    text = verdicts_markdown("image")
    assert text.startswith("**Do these methods pass their own checks?**")
    assert (
        "| saliency | pass: +0.210 [+0.120, +0.300] | pass: +0.300 [+0.200, +0.410] | pass: 0.080 | pass: 0.920 "
        in (text)
    )
    assert verdicts_markdown("tabular").endswith("No benchmarked verdicts for the tabular modality.")


def test_card_warns_when_the_maps_do_not_depend_on_the_model():
    card = explanation_card(
        tiny_pipeline(),
        ExplanationCardData(verdicts=[], sanity_checks={"gradcam": {"spearman": 0.95}, "saliency": {"spearman": 0.1}}),
    )
    assert (
        "> **Warning:** gradcam: the maps of a fully randomised model are nearly those of the trained one (Spearman "
        "0.95 >= 0.9)" in card.text
    )
    assert "saliency: the maps" not in card.text


def _faithfulness_bench():
    from tests.repo_scripts import load_script

    return load_script("bench/explain_faithfulness.py")


def test_merged_verdicts_name_only_the_runs_whose_numbers_they_keep(tmp_path):
    def run(path, command, modalities):
        report = {
            "command": command,
            "conditions": {"samples": 32},
            "modalities": {m: {"methods": {}} for m in modalities},
        }
        path.write_text(json.dumps(report))
        return str(path)

    old = run(tmp_path / "old.json", "python old --modalities image tabular", ["image", "tabular"])
    image = run(tmp_path / "image.json", "python new --modalities image", ["image"])
    merged = _faithfulness_bench().merge_reports([old, image])
    assert merged["modalities"]["image"]["command"] == "python new --modalities image"
    assert merged["modalities"]["tabular"]["command"] == "python old --modalities image tabular"
    assert merged["command"] == "python new --modalities image && python old --modalities image tabular"
    # merging the merged file again with a newer tabular run drops the old command entirely
    merged_path = tmp_path / "merged.json"
    merged_path.write_text(json.dumps(merged))
    tabular = run(tmp_path / "tab.json", "python new --modalities tabular", ["tabular"])
    again = _faithfulness_bench().merge_reports([str(merged_path), tabular])
    assert again["command"] == "python new --modalities image && python new --modalities tabular"


def test_tabular_verdicts_pool_one_check_per_column():
    """`pool_column_checks`: gains averaged over the columns per (sample, step) before the bootstrap, randomisation
    Spearman averaged over every column's maps per stage; known answers on hand-built checks."""
    from types import SimpleNamespace

    import torch

    def column(gain: float, rho_full: float):
        faith = SimpleNamespace(
            baseline="noise", timesteps=[740, 500], signed=True,
            deletion_gain=torch.full((2, 4), gain), insertion_gain=torch.full((2, 4), gain + 0.2),
        )  # fmt: skip
        rand = SimpleNamespace(
            stages=["out", "full"], threshold=0.5, independence_threshold=0.9, spearman_full=rho_full,
            spearman_per_map=torch.tensor([[0.9] * 8, [rho_full] * 8]),
        )  # fmt: skip
        return SimpleNamespace(method="integrated_gradients", faithfulness=faith, randomization=rand)

    pool = _faithfulness_bench().pool_column_checks
    out = pool({"a": column(0.1, 0.2), "b": column(0.3, 0.6)}, n_boot=200, seed=0)
    assert out["faithfulness"]["deletion_gain"]["mean"] == pytest.approx(0.2)
    assert out["faithfulness"]["insertion_gain"]["mean"] == pytest.approx(0.4)
    assert out["faithfulness"]["deletion_gain"]["n"] == 8  # the (sample, step) pairs, not pairs x columns
    assert out["randomization"]["spearman"] == pytest.approx([0.9, 0.4])
    assert out["passed"] and out["randomization"]["passed"]
    assert out["per_column"]["b"] == {"deletion_gain": 0.3, "insertion_gain": 0.5, "spearman_full": 0.6}
    # one column's negative gain cancels the other's: the pooled interval holds 0, and a full-randomisation mean
    # of 0.55 fails
    out = pool({"a": column(-0.3, 0.5), "b": column(0.3, 0.6)}, n_boot=200, seed=0)
    assert not out["faithfulness"]["passed"] and not out["randomization"]["passed"] and not out["passed"]


def test_card_names_the_target_its_verdicts_are_about(monkeypatch, tmp_path):
    import copy

    from diffusers_xai.explain import verdicts

    report = copy.deepcopy(REPORT)
    report["modalities"]["image"]["methods"]["saliency"]["settings"] = {"target": "model contribution to x0, summed"}
    path = tmp_path / "verdicts.json"
    path.write_text(json.dumps(report))
    monkeypatch.setattr(verdicts, "VERDICTS_PATH", path)
    card = explanation_card(tiny_pipeline(), ExplanationCardData(explainers={"saliency": {"timesteps": [50]}}))
    assert "Explained target: model contribution to x0, summed." in card.text
    assert "target=model contribution to x0, summed" in verdicts.verdict_table("image", path=path)
    monkeypatch.setattr(verdicts, "VERDICTS_PATH", tmp_path / "absent.json")
    assert "Explained target" not in explanation_card(tiny_pipeline(), ExplanationCardData()).text

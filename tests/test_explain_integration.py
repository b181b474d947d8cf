"""`Explainer` / `explain_generation`: a pipeline output in, PNGs and a JSON of faithfulness and sanity scores out."""

import json

import pytest
import torch
from PIL import Image

from diffusers_xai import TraceConfig, find_attention_modules
from diffusers_xai.explain import (
    DEFAULT_METHODS,
    EXPLAIN_METHODS,
    DenoiserAttribution,
    DenoiserGradCAM,
    DenoiserShap,
    Explainer,
    ExplanationTarget,
    build_explainer,
)
from diffusers_xai.modalities.explanations import explain_generation
from diffusers_xai.testing import tiny_pipeline, tiny_traced_run


@pytest.fixture(scope="module")
def generation():
    return tiny_traced_run(num_inference_steps=4, trace=TraceConfig(attention=True))


@pytest.mark.slow
def test_explain_generation_writes_pngs_and_json(generation, tmp_path):
    pipe, out = generation
    processors = {n: type(m.get_processor()) for n, m in find_attention_modules(pipe.unet).items()}
    methods = ["trajectory", "attention", "gradcam", "saliency"]
    summary = explain_generation(
        pipe, out, tmp_path, methods=methods, sample_index=1, num_explained_steps=2, gif=False
    )
    assert summary["sample_index"] == 1 and summary["timesteps"] == [75, 0]
    on_disk = json.loads((tmp_path / "explanations.json").read_text())
    assert on_disk == json.loads(json.dumps({k: v for k, v in summary.items() if k != "out_dir"}))
    for name in ("attention", "gradcam", "saliency"):
        entry = summary["methods"][name]
        assert entry["maps_shape"] == [2, 1, 1, 8, 8]
        faith = entry["faithfulness"]
        assert set(faith) >= {
            "deletion_auc",
            "random_deletion_auc",
            "insertion_auc",
            "random_insertion_auc",
            "per_step",
        }
        assert set(faith["per_step"]) == {"75", "0"}
        assert isinstance(faith["random_deletion_auc"], float)
        assert set(entry["sanity_check"]) == {"ssim", "spearman"}
        assert f"{name}_steps.png" in entry["files"] and "faithfulness.png" in entry["files"]
    assert "trajectory" in summary and len(summary["trajectory"]["x0_distance_to_final"]) == 4
    written = {p.name for p in tmp_path.iterdir()}
    assert {
        "sample.png",
        "trajectory_strip.png",
        "trajectory_curves.png",
        "commit_steps.png",
        "attention_maps.png",
        "faithfulness.png",
        "sanity_checks.png",
        "all_methods.png",
        "explanations.json",
    } <= written
    assert not [n for n in written if n.endswith(".tmp")]
    for name in written - {"explanations.json"}:
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and im.width > 50
    # the same random maps are used for every method at a step, so the random AUCs of maps scored by the same
    # protocol agree: attention and saliency (|gradient|) are unsigned, scored on |f - f(x)|; GradCAM is signed
    faith = {n: summary["methods"][n]["faithfulness"] for n in ("attention", "gradcam", "saliency")}
    assert [faith[n]["protocol"] for n in faith] == ["magnitude", "signed", "magnitude"]
    assert faith["attention"]["random_deletion_auc"] == faith["saliency"]["random_deletion_auc"]
    assert faith["gradcam"]["random_deletion_auc"] != faith["saliency"]["random_deletion_auc"]
    # nothing left installed on the UNet
    assert {n: type(m.get_processor()) for n, m in find_attention_modules(pipe.unet).items()} == processors
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pipe.unet.modules()) == 0


def test_explainer_report_without_scores(generation):
    pipe, out = generation
    report = Explainer(
        pipe,
        methods=["integrated_gradients"],
        faithfulness=False,
        sanity_check=False,
        method_kwargs={"integrated_gradients": {"n_steps": 4}},
    ).explain(out.trace, timesteps=[50])
    assert list(report.results) == ["integrated_gradients"] and report.timesteps == [50]
    assert report.results["integrated_gradients"].maps.shape == (1, 1, 1, 8, 8)
    assert report.faithfulness == {} and report.sanity == {}
    assert report.image.shape == (1, 1, 8, 8)  # from the last predicted x0 when given a bare trace
    last = Explainer(pipe, methods=["trajectory"]).explain(out, sample_index=-1)
    assert last.sample_index == 1
    torch.testing.assert_close(last.image, out.images[1:2])


def test_explainer_bad_input(generation):
    pipe, out = generation
    with pytest.raises(ValueError, match="Unknown explanation method"):
        Explainer(pipe, methods=["gradcam", "lrp"])
    with pytest.raises(ValueError, match="`method_kwargs` names unknown methods"):
        Explainer(pipe, method_kwargs={"grad_cam": {}})
    plain = pipe(num_inference_steps=2, output_type="pt")
    with pytest.raises(ValueError, match="holds no trace"):
        Explainer(pipe).explain(plain)
    with pytest.raises(ValueError, match="out of range"):
        Explainer(pipe).explain(out, sample_index=5)
    with pytest.raises(ValueError, match="Timestep 3 is not in the schedule"):
        Explainer(pipe, methods=["saliency"], sanity_check=False).explain(out, timesteps=[3])
    with pytest.raises(ValueError, match="mask has shape"):
        Explainer(pipe, methods=["saliency"], target=ExplanationTarget(mask=torch.ones(3, 3))).explain(out)
    assert set(DEFAULT_METHODS) <= set(EXPLAIN_METHODS) and "shap_partition" not in DEFAULT_METHODS


def test_build_explainer_applies_the_modality_defaults(generation):
    pipe, _ = generation
    # images: IG from fresh noise and GradCAM as HiResCAM of the last up block; tables and series: the classes' own
    ig, row_ig = (
        build_explainer(pipe, "integrated_gradients", "image"),
        build_explainer(pipe, "integrated_gradients", "tabular"),
    )
    assert type(ig) is DenoiserAttribution and ig.baselines == "noise" and row_ig.baselines is None
    cam = build_explainer(pipe, "gradcam", "image")
    assert (
        type(cam) is DenoiserGradCAM
        and cam.weighting == "hirescam"
        and cam.layers == [f"up_blocks.{len(pipe.unet.up_blocks) - 1}"]
    )
    assert build_explainer(pipe, "gradcam", "timeseries").weighting != "hirescam"
    plain = build_explainer(pipe, "gradcam", "image", layer="mid_block", weighting="gradcam")  # init wins
    assert plain.weighting == "gradcam" and plain.layers == ["mid_block"]
    # plain GradCAM of this tiny UNet's last up block is refused: its weights vanish (test_explain_gradcam.py)
    with pytest.raises(ValueError, match="GradCAM weights of 'up_blocks.1' are identically 0"):
        build_explainer(pipe, "gradcam", "image", weighting="gradcam")
    target = ExplanationTarget(output="model_output")
    shap = build_explainer(pipe, "shap_partition", "image", target)
    assert type(shap) is DenoiserShap and shap.algorithm == "partition" and shap.target is target
    assert Explainer(pipe).explainer_for("integrated_gradients").baselines == "noise"
    with pytest.raises(ValueError, match="Method 'trajectory' has no map explainer; choose from"):
        build_explainer(pipe, "trajectory", "image")


@pytest.mark.slow
def test_every_map_method_end_to_end(tmp_path):
    # every map method by name (the defaults keep only those that passed their checks: possibly none)
    methods = ("trajectory", "attention", "gradcam", "integrated_gradients", "saliency", "occlusion", "shap")
    pipe = tiny_pipeline(sample_size=16)
    out = pipe(batch_size=1, num_inference_steps=10, trace=TraceConfig(attention=True), output_type="pil")
    summary = explain_generation(pipe, out, tmp_path, methods=methods)
    assert set(summary["methods"]) == set(methods) - {"trajectory"}
    for entry in summary["methods"].values():
        assert entry["maps_shape"][-2:] == [16, 16]
    assert (tmp_path / "denoising.gif").exists()

"""The Space's images tab: class picker and guidance slider for class-conditional models (handlers called directly)."""

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from safetensors.torch import load

gr = pytest.importorskip("gradio")

from diffusers_xai import DiffusionXAIPipeline, Trace  # noqa: E402
from diffusers_xai.explain import Explainer  # noqa: E402
from diffusers_xai.testing import tiny_unet  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spaces"))
from xai_space import images  # noqa: E402


@pytest.fixture
def conditional_model(tmp_path, monkeypatch):
    path = tmp_path / "conditional"
    monkeypatch.setenv("DIFFUSERS_XAI_ALLOWED_MODELS", str(path))  # the Space serves only models its owner allows
    unet = tiny_unet(seed=0, num_classes=3)
    DiffusionXAIPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=50), class_names=["a", "b", "c"]) \
        .save_pretrained(path)  # fmt: skip
    return str(path)


def test_bundled_model_offers_only_unconditional():
    picker, slider = images.class_choices(None)
    assert picker.choices == [(images.UNCONDITIONAL, images.UNCONDITIONAL)] and picker.interactive is False
    assert slider.interactive is False


def test_conditional_model_offers_its_class_names(conditional_model):
    picker, slider = images.class_choices(conditional_model)
    assert [c[0] for c in picker.choices] == [images.UNCONDITIONAL, "a", "b", "c"] and picker.interactive is True


def test_generate_samples_the_picked_class_with_guidance(conditional_model):
    progress = lambda *a, **k: None  # noqa: E731
    out = images.generate(conditional_model, "ddim", 2, 0, 2, "b", 3.0, progress=progress)
    plain = images.generate(conditional_model, "ddim", 2, 0, 2, images.UNCONDITIONAL, 1.0, progress=progress)
    assert len(out[0]) == 2
    assert np.asarray(out[0][0][0]).shape == np.asarray(plain[0][0][0]).shape
    assert not np.array_equal(np.asarray(out[0][0][0]), np.asarray(plain[0][0][0]))


def test_picking_a_class_on_the_unconditional_model_is_a_clear_error():
    with pytest.raises(gr.Error, match=r"`class_labels` \('a'\) were given but this UNet is unconditional"):
        images.generate(None, "ddim", 2, 0, 1, "a", 1.0, progress=lambda *a, **k: None)


@pytest.mark.parametrize("scale", ["lots", 0.5, 11.0, None])
def test_a_guidance_scale_off_the_slider_is_a_clear_error(conditional_model, scale):
    with pytest.raises(gr.Error, match=rf"Guidance scale must be a number in \[1, 10\], got {scale!r}\."):
        images.generate(conditional_model, "ddim", 2, 0, 1, "b", scale, progress=lambda *a, **k: None)


def _space_maps(archive) -> torch.Tensor:
    with zipfile.ZipFile(archive) as z:
        return load(z.read("maps.safetensors"))["maps"]


def test_explain_uses_the_class_each_sample_was_drawn_with(conditional_model):
    progress = lambda *a, **k: None  # noqa: E731
    out = images.generate(conditional_model, "ddim", 2, 0, 2, "b", 3.0, progress=progress)
    state = out[1]
    assert state["class_labels"] == [1, 1]
    *_, summary, numbers, archive = images.explain(state, "saliency", None, 1, 1, False, False, progress=progress)
    assert numbers["class_label"] == "b" and numbers["guidance_scale"] == 3.0
    assert "(class b, guided at scale 3: the guided prediction is explained)" in summary
    # the Space's maps are the explainer's of the guided mix on the trace with class 1, and not those of the
    # conditional model alone or of another class
    pipe = DiffusionXAIPipeline.from_pretrained(conditional_model)
    trace = Trace.load(state["trace_path"])
    t = trace.steps[1].timestep

    def maps(label, guidance_scale=3.0):
        explainer = Explainer(
            pipe, methods=["saliency"], faithfulness=False, sanity_check=False, guidance_scale=guidance_scale
        )
        report = explainer.explain(trace, sample_index=1, timesteps=[t], class_labels=torch.tensor([label]))
        return report.results["saliency"].maps.float()

    assert torch.equal(_space_maps(archive), maps(1))
    assert not torch.allclose(maps(1), maps(1, guidance_scale=1.0))
    assert not torch.allclose(maps(1), maps(0))


def test_explain_of_an_unconditional_draw_uses_the_null_class(conditional_model):
    progress = lambda *a, **k: None  # noqa: E731
    state = images.generate(conditional_model, "ddim", 2, 0, 1, images.UNCONDITIONAL, 1.0, progress=progress)[1]
    assert state["class_labels"] == [3]  # 3 classes: label 3 is the null class
    numbers = images.explain(state, "saliency", None, 0, 1, False, False, progress=progress)[4]
    assert numbers["class_label"] == images.UNCONDITIONAL


def test_unconditional_model_state_has_no_classes():
    state = images.generate(None, "ddim", 2, 0, 1, images.UNCONDITIONAL, 1.0, progress=lambda *a, **k: None)[1]
    assert state["class_labels"] is None

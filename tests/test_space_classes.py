"""The Space's images tab: class picker and guidance slider for class-conditional models (handlers called directly)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from diffusers import DDIMScheduler

gr = pytest.importorskip("gradio")

from diffusers_xai import DiffusionXAIPipeline  # noqa: E402
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

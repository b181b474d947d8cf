"""Class-conditional sampling with classifier-free guidance: labels, names, guidance maths, save/load, bad input."""

import json

import pytest
import torch
from diffusers import DDIMScheduler

from diffusers_xai import DiffusionXAIPipeline
from diffusers_xai.pipelines.guidance import ClassifierFreeGuidance
from diffusers_xai.pipelines.sampling import denoise_progressive
from diffusers_xai.testing import tiny_unet
from tests.test_training import TINY as TRAINING_TINY

NAMES = ["cat", "dog", "bird"]


def conditional_pipeline(class_names=NAMES, seed=0):
    unet = tiny_unet(seed=seed, num_classes=3)
    with torch.no_grad():  # diffusers initialises the class embedding at N(0, 1); make classes clearly distinct
        unet.class_embedding.weight.mul_(3.0)
    pipe = DiffusionXAIPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=50), class_names=class_names)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, **kw):
    return pipe(generator=torch.Generator().manual_seed(0), num_inference_steps=4, output_type="pt", **kw)


def test_guidance_one_is_the_conditional_model_bit_for_bit():
    pipe = conditional_pipeline()
    out = run(pipe, batch_size=3, class_labels=[0, 1, 2], guidance_scale=1.0)
    # the plain conditional loop: the stock DDIM step on unet(x_t, t, class_labels)
    pipe.scheduler.set_timesteps(4)
    x = torch.randn((3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        for t in pipe.scheduler.timesteps:
            x = pipe.scheduler.step(pipe.unet(x, t, class_labels=labels).sample, t, x, eta=0.0).prev_sample
    assert torch.equal(out.images, (x / 2 + 0.5).clamp(0, 1))
    assert out.class_labels.tolist() == [0, 1, 2]


def test_guidance_is_uncond_plus_scale_times_the_difference():
    unet = conditional_pipeline().unet
    x, t, y = (
        torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)),
        torch.tensor(10),
        torch.tensor([0, 2]),
    )
    with torch.no_grad():
        guided = ClassifierFreeGuidance(unet, null_class_label=3, guidance_scale=2.5)(x, t, class_labels=y).sample
        cond = unet(x, t, class_labels=y).sample
        uncond = unet(x, t, class_labels=torch.tensor([3, 3])).sample
    torch.testing.assert_close(guided, uncond + 2.5 * (cond - uncond), rtol=1e-5, atol=1e-6)


def test_guided_sampling_differs_from_unguided_and_names_equal_ints():
    pipe = conditional_pipeline()
    by_name = run(pipe, batch_size=2, class_labels=["dog", "bird"], guidance_scale=3.0)
    by_int = run(pipe, batch_size=2, class_labels=torch.tensor([1, 2]), guidance_scale=3.0)
    plain = run(pipe, batch_size=2, class_labels=[1, 2])
    assert torch.equal(by_name.images, by_int.images)
    assert not torch.allclose(by_name.images, plain.images)


def test_one_label_for_the_batch_and_unconditional_samples_use_the_null_class():
    pipe = conditional_pipeline()
    assert run(pipe, batch_size=4, class_labels="dog").class_labels.tolist() == [1, 1, 1, 1]
    unconditional = run(pipe, batch_size=2)
    assert unconditional.class_labels.tolist() == [3, 3]
    assert not torch.equal(unconditional.images, run(pipe, batch_size=2, class_labels=0).images)


def test_progressive_yields_the_same_steps_as_call():
    pipe = conditional_pipeline()
    kwargs = dict(batch_size=2, num_inference_steps=4, class_labels=[0, 1], guidance_scale=2.0)
    steps = list(pipe.progressive(generator=torch.Generator().manual_seed(0), **kwargs))
    out = pipe(generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs)
    assert torch.equal((steps[-1].prev_sample / 2 + 0.5).clamp(0, 1), out.images)


def test_class_names_survive_save_and_from_pretrained(tmp_path):
    pipe = conditional_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = DiffusionXAIPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.class_names == NAMES and loaded.num_classes == 3 and loaded.null_class_label == 3
    # not a list: diffusers' Hub download reads every list in model_index.json as a (library, class) component
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["class_names"] == {"0": "cat", "1": "dog", "2": "bird"}
    a = run(pipe, batch_size=2, class_labels=["cat", "bird"], guidance_scale=2.0)
    b = run(loaded, batch_size=2, class_labels=["cat", "bird"], guidance_scale=2.0)
    assert torch.equal(a.images, b.images)


def test_an_index_as_text_stands_for_its_class():  # as `diffusers-xai generate --class_labels 1` gives it
    assert run(conditional_pipeline(), batch_size=2, class_labels=["1", "bird"]).class_labels.tolist() == [1, 2]


def test_without_names_labels_are_named_by_their_index():
    pipe = conditional_pipeline(class_names=None)
    assert pipe.class_names == ["0", "1", "2"]
    assert run(pipe, batch_size=1, class_labels="2").class_labels.tolist() == [2]


def test_denoise_progressive_passes_class_labels():
    pipe = conditional_pipeline()
    pipe.scheduler.set_timesteps(2)
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = [
            s.prev_sample
            for s in denoise_progressive(pipe.unet, pipe.scheduler, x, None, 0.0, {"class_labels": torch.tensor([0])})
        ]
        b = [
            s.prev_sample
            for s in denoise_progressive(pipe.unet, pipe.scheduler, x, None, 0.0, {"class_labels": torch.tensor([1])})
        ]
    assert not torch.equal(a[-1], b[-1])


# ---- bad input ----
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"class_labels": 3},
            r"Class label 3 is outside this model's classes 0..2 \(num_class_embeds=4, the last",
        ),
        ({"class_labels": -1}, r"Class label -1 is outside this model's classes 0..2"),
        (
            {"class_labels": "dgo"},
            r"Unknown class name 'dgo'; this model's classes are \['cat', 'dog', 'bird'\] \(or their indices 0..2\)\. "
            r"Did you mean 'dog'\?",
        ),
        ({"class_labels": "3"}, r"Unknown class name '3'; this model's classes are \['cat', 'dog', 'bird'\] \(or"),
        ({"class_labels": [0, 1, 2]}, r"Got 3 class labels for batch_size=2; pass one label for the whole batch"),
        ({"class_labels": 1.5}, r"Class labels must be ints or class names, got 1.5"),
        ({"class_labels": 0, "guidance_scale": 0.5}, r"`guidance_scale` must be a number >= 1 \(1 = no guidance"),
        ({"guidance_scale": 3.0}, r"`guidance_scale`=3.0 guides towards `class_labels`; pass class_labels"),
    ],
)
def test_bad_conditioning_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(conditional_pipeline(), batch_size=2, **kwargs)


def test_unconditional_model_refuses_labels_and_guidance():
    pipe = DiffusionXAIPipeline(unet=tiny_unet(), scheduler=DDIMScheduler(num_train_timesteps=50))
    with pytest.raises(ValueError, match=r"`guidance_scale`=2.0 needs a class-conditional model trained with label"):
        run(pipe, batch_size=1, guidance_scale=2.0)
    with pytest.raises(ValueError, match=r"`class_labels` \(0\) were given but this UNet is unconditional"):
        run(pipe, batch_size=1, class_labels=0)


def test_class_names_must_match_the_class_embedding():
    with pytest.raises(ValueError, match=r"2 `class_names` were given but the UNet has 3 classes"):
        DiffusionXAIPipeline(unet=tiny_unet(num_classes=3), scheduler=DDIMScheduler(), class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"1 `class_names` were given but the UNet has no class embedding"):
        DiffusionXAIPipeline(unet=tiny_unet(), scheduler=DDIMScheduler(), class_names=["a"])


# ---- training a class-conditional model ----
# tests/test_training.py's tiny digits run at the default learning rate and warmup, 2 steps, no explanation card
TINY = {k: v for k, v in TRAINING_TINY.items() if k not in ("learning_rate", "lr_warmup_steps")}
TINY.update(max_train_steps=2, explanation_card=False)


def test_digits_train_a_conditional_model_with_named_classes(tmp_path):
    from diffusers_xai.training import TrainingConfig, train

    result = train(TrainingConfig(**TINY, output_dir=str(tmp_path / "run")))
    assert result.pipeline.unet.config.num_class_embeds == 11  # 10 digits + the null class
    loaded = DiffusionXAIPipeline.from_pretrained(tmp_path / "run")
    assert loaded.class_names == [str(d) for d in range(10)] and loaded.null_class_label == 10
    loaded.set_progress_bar_config(disable=True)
    out = loaded(batch_size=2, class_labels=["3", 7], guidance_scale=3.0, num_inference_steps=2, output_type="pt")
    assert out.class_labels.tolist() == [3, 7]


def test_label_column_none_trains_unconditionally(tmp_path):
    from diffusers_xai.training import TrainingConfig, train

    result = train(TrainingConfig.from_dict({**TINY, "label_column": "none", "output_dir": str(tmp_path / "run")}))
    assert result.pipeline.unet.config.num_class_embeds is None and result.pipeline.class_names is None


def test_label_dropout_sends_labels_to_the_null_class():
    from diffusers_xai.modalities.image.labels import ImageLabels
    from diffusers_xai.training.objective import drop_labels

    dropped = drop_labels(torch.zeros(4000, dtype=torch.long), 0.25, 2, torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0, 2}
    assert abs((dropped == 2).float().mean().item() - 0.25) < 0.02
    again = drop_labels(torch.zeros(4000, dtype=torch.long), 0.25, 2, torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again)  # drawn from the run's generator: replayed exactly on resume
    with pytest.raises(ValueError, match=r"Label 'c' in column 'label' is not one of the classes fitted"):
        ImageLabels(column="label", names=["a", "b"], dropout=0.0, is_class_label=False).encode(["a", "c"])


def test_unknown_label_column_and_bad_dropout_are_refused(tmp_path):
    from diffusers_xai.training import TrainingConfig, train

    with pytest.raises(ValueError, match=r"Label column 'lable' not found; .* Did you mean `label_column: label`\?"):
        train(TrainingConfig.from_dict({**TINY, "label_column": "lable", "output_dir": str(tmp_path / "a")}))
    with pytest.raises(ValueError, match=r"`class_dropout_prob` must be in \[0, 1\)"):
        TrainingConfig.from_dict({**TINY, "class_dropout_prob": 1.0, "output_dir": str(tmp_path / "b")})


# ---- end-of-training evaluation of a class-conditional model ----
def record_sampling(monkeypatch) -> list[tuple[list[int] | None, float]]:
    """Every `DiffusionXAIPipeline` call's `(class_labels, guidance_scale)`, in order."""
    calls, call = [], DiffusionXAIPipeline.__call__

    def recording(self, *args, **kwargs):
        labels = kwargs.get("class_labels")
        calls.append((None if labels is None else torch.as_tensor(labels).tolist(), kwargs.get("guidance_scale", 1.0)))
        return call(self, *args, **kwargs)

    monkeypatch.setattr(DiffusionXAIPipeline, "__call__", recording)
    return calls


def test_evaluation_scores_class_conditional_samples_and_reports_the_null_class_apart(tmp_path, monkeypatch):
    from diffusers_xai.modalities.image.modality import ImageModality
    from diffusers_xai.training import TrainingConfig

    config = TrainingConfig(**TINY, output_dir=str(tmp_path), validation_num_inference_steps=3)
    calls = record_sampling(monkeypatch)
    report = ImageModality().evaluate(conditional_pipeline(class_names=None), config, 70, str(tmp_path / "eval"))
    # the scored draw: 64 + 6 samples of the classes 0, 1, 2 in turn, unguided; then the same count of null samples
    draws = [c for c in calls if c[1] == 1.0]
    assert [labels for labels, _ in draws[:2]] == [[i % 3 for i in range(64)], [(64 + i) % 3 for i in range(6)]]
    assert [labels for labels, _ in draws[2:]] == [None, None]
    assert {scale for _, scale in calls[4:]} == {3.0}  # the class accuracy's guided samples come after
    assert report["fid"].name == "FID (digits-CNN features, class-conditional samples, 3 classes in turn, guidance 1)"
    assert report["prdc_recall"].name.endswith("k=5, class-conditional samples, 3 classes in turn, guidance 1)")
    assert report["fid_null_class"].name == "FID (digits-CNN features, unconditional null-class samples)"
    assert report["kid_null_class"].name == "KID (digits-CNN features, unconditional null-class samples)"
    # same noise (one generator seeded seed + 1 per draw), different labels: different samples, different FID
    assert report["fid"].value != report["fid_null_class"].value
    assert report["kid"].value != report["kid_null_class"].value


def test_evaluation_of_an_unconditional_model_is_unchanged(tmp_path, monkeypatch):
    from diffusers_xai.evaluation import evaluate_images
    from diffusers_xai.modalities.image.modality import ImageModality
    from diffusers_xai.testing import tiny_unet
    from diffusers_xai.training import TrainingConfig

    config = TrainingConfig(**TINY, output_dir=str(tmp_path), validation_num_inference_steps=3)
    pipe = DiffusionXAIPipeline(unet=tiny_unet(seed=0), scheduler=DDIMScheduler(num_train_timesteps=50))
    calls = record_sampling(monkeypatch)
    report = ImageModality().evaluate(pipe, config, 20, str(tmp_path / "eval"))
    assert calls == [(None, 1.0)] and "fid_null_class" not in report
    assert report["fid"].name == "FID (digits-CNN features)"
    # the samples of one DDIM draw seeded seed + 1 against the training images, as before
    fake = pipe(batch_size=20, generator=torch.Generator().manual_seed(1), num_inference_steps=3, output_type="pt")
    real = ImageModality().reference_images(config, 2000)
    expected = evaluate_images(real, fake.images, value_range=(0.0, 1.0), progress=False)
    assert report["fid"].value == pytest.approx(expected["fid"].value, rel=1e-6)

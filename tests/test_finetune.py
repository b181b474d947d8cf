"""Fine-tuning a saved or stock pipeline, fully and with LoRA (peft), end to end offline on a small image folder."""

import json
import os

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler
from PIL import Image
from safetensors.torch import load_file

from diffusers_xai import DiffusionXAIPipeline
from diffusers_xai.models.lora import (
    LORA_CONFIG_NAME,
    LORA_WEIGHTS_NAME,
    add_lora,
    fuse_lora,
    has_lora,
    load_lora,
    make_lora_config,
    save_lora,
    unload_lora,
)
from diffusers_xai.testing import tiny_tabular_pipeline, tiny_unet
from diffusers_xai.training import TrainingConfig, train
from tests.test_training import QUIET


def image_folder(path, n=12, size=8):
    """`n` RGB squares: a bright blob on a dark background at a seeded position."""
    rng = np.random.default_rng(0)
    os.makedirs(path, exist_ok=True)
    for i in range(n):
        pixels = np.full((size, size, 3), 20, dtype=np.uint8)
        r, c = rng.integers(0, size - 3, 2)
        pixels[r : r + 3, c : c + 3] = rng.integers(150, 256, 3)
        Image.fromarray(pixels).save(os.path.join(path, f"{i:02d}.png"))
    return str(path)


def base_pipeline(path, in_channels=3, attention=True, stock=False):
    unet = tiny_unet(seed=0, in_channels=in_channels, attention=attention)
    scheduler = DDPMScheduler(
        num_train_timesteps=50, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"
    )
    cls = DDPMPipeline if stock else DiffusionXAIPipeline
    cls(unet=unet, scheduler=scheduler).save_pretrained(path, safe_serialization=True)
    return str(path)


def finetune_config(data, base, out, **kw):
    values = dict(
        train_data_dir=data,
        resolution=8,
        channels=3,
        pretrained_model_name_or_path=base,
        max_train_steps=3,
        train_batch_size=4,
        learning_rate=1e-2,
        lr_warmup_steps=0,
        explanation_card=False,
        output_dir=str(out),
        **QUIET,
    )
    return TrainingConfig(**{**values, **kw})


def unet_weights(folder):
    return load_file(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))


def sample(pipe, seed=0):
    pipe.set_progress_bar_config(disable=True)
    return pipe(batch_size=2, generator=torch.Generator().manual_seed(seed), num_inference_steps=3, output_type="pt")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    return image_folder(root / "images"), base_pipeline(root / "base"), root


def test_full_finetuning_starts_from_the_pretrained_unet_and_keeps_its_schedule(setup):
    data, base, root = setup
    # a learning rate of 1e-9 moves Adam's first steps by ~1e-9: the result is the base model, not a fresh init
    config = finetune_config(data, base, root / "full-tiny-lr", learning_rate=1e-9, use_ema=False)
    config.beta_schedule, config.prediction_type = "linear", "epsilon"  # the pretrained schedule must win
    result = train(config)
    before, after = unet_weights(base), unet_weights(result.output_dir)
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=1e-7, msg=key)
    scheduler = DDPMScheduler.from_pretrained(result.output_dir, subfolder="scheduler")
    assert (scheduler.config.beta_schedule, scheduler.config.prediction_type) == ("squaredcos_cap_v2", "v_prediction")
    assert scheduler.config.num_train_timesteps == 50
    assert (config.beta_schedule, config.prediction_type) == ("squaredcos_cap_v2", "v_prediction")


def test_full_finetuning_end_to_end_reload_and_sample(setup):
    data, base, root = setup
    result = train(finetune_config(data, base, root / "full"))
    before, after = unet_weights(base), unet_weights(result.output_dir)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trained
    pipe = DiffusionXAIPipeline.from_pretrained(result.output_dir)
    images = sample(pipe).images
    assert images.shape == (2, 3, 8, 8)
    assert torch.isfinite(images).all()


def test_finetuning_a_stock_ddpm_pipeline_layout(tmp_path, setup):
    data, _, _ = setup
    stock = base_pipeline(tmp_path / "stock", stock=True)
    with open(os.path.join(stock, "model_index.json")) as f:
        assert json.load(f)["_class_name"] == "DDPMPipeline"
    result = train(finetune_config(data, stock, tmp_path / "out", max_train_steps=2))
    assert result.global_step == 2
    assert DiffusionXAIPipeline.from_pretrained(result.output_dir).unet.config.in_channels == 3


def test_lora_trains_only_the_adapter_saves_it_alone_and_loads_onto_the_base(setup):
    data, base, root = setup
    base_before = {k: v.clone() for k, v in unet_weights(base).items()}
    result = train(finetune_config(data, base, root / "lora", lora_rank=4))
    out = result.output_dir
    # only the adapter is written: no unet/ folder, no model_index.json
    assert os.path.isfile(os.path.join(out, LORA_WEIGHTS_NAME))
    assert not os.path.exists(os.path.join(out, "unet")) and not os.path.exists(os.path.join(out, "model_index.json"))
    adapter = load_file(os.path.join(out, LORA_WEIGHTS_NAME))
    assert adapter and all(".lora_A." in k or ".lora_B." in k for k in adapter)
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in adapter.items())  # B left zero-init
    with open(os.path.join(out, LORA_CONFIG_NAME)) as f:
        adapter_config = json.load(f)
    assert (adapter_config["r"], adapter_config["base_model_name_or_path"]) == (4, base)
    # the base pipeline on disk is untouched
    base_after = unet_weights(base)
    for key in base_before:
        assert torch.equal(base_before[key], base_after[key]), key

    pipe = DiffusionXAIPipeline.from_pretrained(base)
    plain = sample(pipe).images
    pipe.load_lora_weights(out)
    adapted = sample(pipe).images
    assert not torch.allclose(adapted, plain)
    # the base weights inside the LoRA layers are the pretrained ones
    lora_q = pipe.unet.get_submodule("down_blocks.1.attentions.0.to_q")
    torch.testing.assert_close(lora_q.base_layer.weight, base_before["down_blocks.1.attentions.0.to_q.weight"])
    pipe.fuse_lora()
    assert not has_lora(pipe.unet)
    torch.testing.assert_close(sample(pipe).images, adapted, rtol=0, atol=1e-5)

    again = DiffusionXAIPipeline.from_pretrained(base)
    again.load_lora_weights(out)
    again.unload_lora_weights()
    # unloading restores the base layers exactly; the output equals the plain one to float rounding (the restored
    # Linear layers may take another matmul path: 2.4e-7 apart with peft 0.21)
    restored = again.unet.state_dict()
    assert restored.keys() == base_before.keys()
    assert all(torch.equal(restored[k], base_before[k]) for k in base_before)
    torch.testing.assert_close(sample(again).images, plain, rtol=0, atol=1e-6)


def test_lora_resume_from_checkpoint_matches_an_uninterrupted_run(setup):
    data, base, root = setup
    config = finetune_config(data, base, root / "lora-ckpt", lora_rank=2, max_train_steps=4, checkpointing_steps=2)
    straight = train(config)
    checkpoint = os.path.join(straight.output_dir, "checkpoint-2")
    assert sorted(os.listdir(os.path.join(checkpoint, "unet_lora"))) == [LORA_CONFIG_NAME, LORA_WEIGHTS_NAME]
    expected = load_file(os.path.join(straight.output_dir, LORA_WEIGHTS_NAME))
    resumed = train(config.replace(resume_from_checkpoint=checkpoint, checkpointing_steps=None))
    assert resumed.initial_global_step == 2
    got = load_file(os.path.join(resumed.output_dir, LORA_WEIGHTS_NAME))
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)


def test_lora_helpers_round_trip_and_fuse(tmp_path):
    unet = tiny_unet(seed=0, in_channels=1)
    x, t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([3, 7])
    with torch.no_grad():
        reference = unet(x, t).sample
    add_lora(unet, make_lora_config(2, target_modules=["to_q", "to_v", "conv1"]))
    trainable = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    with torch.no_grad():
        # B = 0: the adapter starts as the identity (to float rounding: peft 0.21's wrapped layers can take
        # another kernel path than the bare ones)
        torch.testing.assert_close(unet(x, t).sample, reference, rtol=0, atol=1e-6)
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
        adapted = unet(x, t).sample
    save_lora(unet, tmp_path / "lora")
    other = load_lora(tiny_unet(seed=0, in_channels=1), tmp_path / "lora")
    with torch.no_grad():
        assert torch.equal(other(x, t).sample, adapted)
        fuse_lora(other)
        torch.testing.assert_close(other(x, t).sample, adapted, rtol=0, atol=1e-5)
    assert not has_lora(other)
    plain = unload_lora(load_lora(tiny_unet(seed=0, in_channels=1), tmp_path / "lora"))
    with torch.no_grad():
        torch.testing.assert_close(plain(x, t).sample, reference, rtol=0, atol=1e-6)


# ---- bad input ----
@pytest.mark.parametrize(
    "use_base, kw, message",
    [
        (True, dict(channels=1), r"in_channels=3 but the data is set to channels=1; set `--channels 3`"),
        (True, dict(resolution=16), r"sample_size=8x8 but the data is set to resolution=16; set `--resolution 8"),
        (False, dict(lora_rank=4), r"`lora_rank` \(4\) adapts a trained model: set `pretrained_model_name"),
    ],
    ids=["channels", "resolution", "lora-without-base"],
)
def test_config_mismatch_names_the_flag(setup, tmp_path, use_base, kw, message):
    data, base, _ = setup
    with pytest.raises(ValueError, match=message):
        finetune_config(data, base if use_base else None, tmp_path / "o", **kw)


def test_not_a_pipeline_folder(setup, tmp_path):
    data, _, _ = setup
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"has no unet/config.json or scheduler/scheduler_config.json"):
        finetune_config(data, str(tmp_path / "empty"), tmp_path / "o")
    # a table model's folder: what it holds is named (it had the same words as an empty folder)
    tiny_tabular_pipeline()[0].save_pretrained(tmp_path / "table")
    with pytest.raises(ValueError, match=r"has no unet/config.json \(it holds a TabularXAIPipeline; fine-tuning"):
        finetune_config(data, str(tmp_path / "table"), tmp_path / "o")


def test_lora_on_a_unet_without_attention_names_the_fix(setup, tmp_path):
    data, _, _ = setup
    base = base_pipeline(tmp_path / "no-attn", attention=False)
    with pytest.raises(ValueError, match=r"LoRA found no layer named .*set `lora_target_modules`.*'conv1', 'conv2'"):
        train(finetune_config(data, base, tmp_path / "o", lora_rank=4))


def test_lora_weights_onto_another_model_are_refused(tmp_path):
    unet = add_lora(tiny_unet(seed=0, in_channels=1), make_lora_config(2))
    save_lora(unet, tmp_path / "lora")
    wider = tiny_unet(seed=0, in_channels=1)
    wider.down_blocks[1].attentions[0].to_q = torch.nn.Linear(8, 16)
    with pytest.raises(ValueError, match=r"do not fit this model .*size mismatch"):
        load_lora(wider, tmp_path / "lora")
    assert not has_lora(wider)


def test_lora_folder_must_hold_the_adapter(tmp_path):
    with pytest.raises(ValueError, match=r"is not a LoRA folder: it needs adapter_config.json"):
        DiffusionXAIPipeline(unet=tiny_unet(), scheduler=DDPMScheduler()).load_lora_weights(tmp_path)

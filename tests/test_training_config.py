"""TrainingConfig validation, CLI overrides, data sources and the image modality's transforms (no training)."""

import dataclasses
import json
import os
import sys

import datasets
import numpy as np
import PIL.Image
import pytest
import torch

from diffusers_xai.modalities.base import Modality, ModalityOptions
from diffusers_xai.modalities.image import ImageModality
from diffusers_xai.modalities.registry import MODALITIES, get_modality
from diffusers_xai.training import TrainingConfig, add_training_arguments, config_from_args, digits_config, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(
    dataset_name="sklearn-digits",
    resolution=8,
    channels=1,
    block_out_channels=(4, 8),
    norm_num_groups=4,
    attention_head_dim=4,
    report_to="none",
)


def tiny(tmp_path, **kw):
    return TrainingConfig(**{**TINY, "output_dir": str(tmp_path / "out"), **kw})


def write_yaml(path, text):
    path.write_text(text)
    return str(path)


def parse(argv):
    import argparse

    parser = add_training_arguments(argparse.ArgumentParser(allow_abbrev=False))
    args, unknown = parser.parse_known_args(argv)
    return config_from_args(args, unknown)


# ---- keys, values, typos ----
def test_unknown_key_names_closest_valid_key():
    with pytest.raises(ValueError, match=r"'learing_rate'.*Did you mean 'learning_rate'"):
        TrainingConfig.from_dict({**TINY, "learing_rate": 1e-3})


def test_yaml_typo_names_file_and_key(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", "dataset_name: sklearn-digits\ntrain_bach_size: 4\n")
    with pytest.raises(ValueError, match=r"'train_bach_size' in .*c\.yaml.*Did you mean 'train_batch_size'"):
        TrainingConfig.from_yaml(path)


def test_cli_overrides_yaml_with_types(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", "dataset_name: sklearn-digits\nlearning_rate: 1.0e-4\nchannels: 1\n")
    config = parse(
        [
            "--config",
            path,
            "--learning_rate",
            "3e-4",
            "--block_out_channels",
            "[8, 16]",
            "--random_flip",
            "--seed",
            "7",
            "--norm_num_groups",
            "4",
            "--resolution",
            "16",
        ]
    )
    assert config.learning_rate == 3e-4 and isinstance(config.learning_rate, float)
    assert config.block_out_channels == (8, 16)
    assert config.random_flip is True and config.seed == 7 and config.channels == 1


def test_cli_typo_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"'max_train_step'.*Did you mean 'max_train_steps'"):
        parse(["--dataset_name", "sklearn-digits", "--max_train_step", "5"])


def test_yaml_floats_without_dot_and_cosine_alias():
    config = TrainingConfig.from_dict({**TINY, "learning_rate": "1e-3", "beta_schedule": "cosine"})
    assert config.learning_rate == 1e-3
    assert config.beta_schedule == "squaredcos_cap_v2"
    assert TrainingConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"mixed_precision": "fp32"}, r"`mixed_precision` must be one of \['no', 'fp16', 'bf16'\], got 'fp32'"),
        ({"lr_scheduler": "cosin"}, r"Did you mean 'cosine'"),
        ({"prediction_type": "noise"}, r"prediction_type"),
        ({"train_batch_size": 0}, r"`train_batch_size` must be >= 1, got 0\.$"),
        # 0 reads as "off", which is null: the message says so
        ({"eval_samples": 0}, r"`eval_samples` must be >= 1, got 0; null means no end-of-run evaluation \(`--eval_"),
        ({"validation_steps": 0}, r"`validation_steps` must be >= 1, got 0; null means never \(`--validation_steps"),
        ({"learning_rate": -1.0}, r"`learning_rate` must be > 0"),
        ({"seed": -3}, r"`seed` must be in \[0, 2\*\*32 - 1\] \(or null\), got -3\.$"),  # numpy's words named neither
        ({"learning_rate": "fast"}, r"`learning_rate` must be a number, got 'fast'"),
        ({"validation_split": 1.0}, r"validation_split"),
        ({"channels": 2}, r"`channels` must be 1 \(grayscale\) or 3 \(RGB\), got 2"),
        ({"norm_num_groups": 3}, r"`norm_num_groups` \(3\) must divide"),
        ({"resolution": 9}, r"must be divisible by"),
        ({"dataset_name": None}, r"No training data"),
        ({"train_data_dir": "/nonexistent"}, r"Set either `dataset_name`"),
        ({"modality": "audio"}, r"Unknown modality 'audio'"),
    ],
)
def test_bad_values_are_rejected_before_training(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**{**TINY, **changes})


def test_wrong_channel_count_in_model_config(tmp_path):
    from diffusers_xai.testing import tiny_unet

    tiny_unet(in_channels=3).save_config(tmp_path / "unet")
    with pytest.raises(ValueError, match=r"in_channels=3 but the data has channels=1"):
        TrainingConfig(**{**TINY, "model_config_name_or_path": str(tmp_path / "unet")})


def test_bad_resume_path(tmp_path):
    with pytest.raises(ValueError, match=r"`resume_from_checkpoint` 'checkpoint-7' does not exist.*'latest'"):
        tiny(tmp_path, resume_from_checkpoint="checkpoint-7")
    (tmp_path / "out" / "checkpoint-3").mkdir(parents=True)  # an interrupted, incomplete save
    with pytest.raises(ValueError, match=r"not a complete checkpoint"):
        tiny(tmp_path, resume_from_checkpoint="checkpoint-3")
    assert tiny(tmp_path, resume_from_checkpoint="latest").resume_from_checkpoint == "latest"


def test_shipped_configs_validate(tmp_path):
    digits = TrainingConfig.from_yaml(os.path.join(REPO, "train/configs/digits.yaml"))
    assert (digits.dataset_name, digits.resolution, digits.channels) == ("sklearn-digits", 16, 1)
    assert digits == digits_config()  # the YAML and the packaged preset (used by the quickstart) agree
    folder = tmp_path / "images"
    folder.mkdir()
    config = TrainingConfig.from_yaml(
        os.path.join(REPO, "train/configs/imagefolder_gpu.yaml"), {"train_data_dir": str(folder)}
    )
    assert config.train_data_dir == str(folder) and config.dataset_name is None


# ---- modality options (how tabular / time-series keys reach the same config) ----
@dataclasses.dataclass
class _ToyOptions(ModalityOptions):
    numerical_columns: list[str] | None = None
    hidden_dims: list[int] = dataclasses.field(default_factory=lambda: [8, 8])


class _ToyModality(Modality):
    name = "toy"
    pipeline_class = object
    options_class = _ToyOptions

    def validate_config(self, config):
        if config.modality_options.hidden_dims and min(config.modality_options.hidden_dims) < 1:
            raise ValueError("`hidden_dims` must be positive")

    load_dataset = fit_preprocessor = to_tensors = build_model = build_pipeline = None


def test_modality_options_are_keys_of_that_modality_only(monkeypatch):
    monkeypatch.setitem(MODALITIES, "toy", _ToyModality)
    config = TrainingConfig.from_dict({"modality": "toy", "dataset_name": "x.csv", "numerical_columns": ["a"]})
    assert config.modality_options.numerical_columns == ["a"] and config.modality_options.hidden_dims == [8, 8]
    assert TrainingConfig.from_dict(config.to_dict()).modality_options == config.modality_options
    with pytest.raises(ValueError, match=r"`hidden_dims` must be positive"):
        TrainingConfig.from_dict({"modality": "toy", "dataset_name": "x.csv", "hidden_dims": [0]})
    with pytest.raises(ValueError, match=r"'numerical_column'.*Did you mean 'numerical_columns'"):
        TrainingConfig.from_dict({"modality": "toy", "dataset_name": "x.csv", "numerical_column": ["a"]})
    with pytest.raises(ValueError, match=r"Unknown training config key 'numerical_columns'.*modality 'image'"):
        TrainingConfig.from_dict({**TINY, "numerical_columns": ["a"]})


# ---- data sources and bad data (errors raised by train() before the first step) ----
def _digit_images(n=6, size=8):
    from diffusers_xai.modalities.image.data import load_digits_dataset

    return [load_digits_dataset(size)[i]["image"] for i in range(n)]


def test_missing_image_column_fails_before_training(tmp_path):
    images = _digit_images()
    datasets.Dataset.from_dict({"img": images}, features=datasets.Features({"img": datasets.Image()})).save_to_disk(
        str(tmp_path / "ds")
    )
    config = tiny(tmp_path, dataset_name=str(tmp_path / "ds"), max_train_steps=1)
    with pytest.raises(ValueError, match=r"Image column 'image' not found.*\['img'\].*image_column: img"):
        train(config)
    assert not os.path.exists(tmp_path / "out" / "model_index.json")


def test_empty_dataset_fails_before_training(tmp_path, monkeypatch):
    (tmp_path / "empty.csv").write_text("image\n")  # a header and no rows
    with pytest.raises(ValueError, match=r"empty\.csv' \(split 'train'\) is empty; there is nothing to train on"):
        train(tiny(tmp_path, dataset_name=str(tmp_path / "empty.csv"), max_train_steps=1))
    # a source that loads fine but has no rows (here: a filtered-out dataset) is caught by the trainer itself
    empty = datasets.Dataset.from_dict({"image": []}, features=datasets.Features({"image": datasets.Image()}))
    monkeypatch.setattr(ImageModality, "load_dataset", lambda self, config: empty)
    with pytest.raises(ValueError, match=r"'sklearn-digits' \(split 'train'\) is empty"):
        train(tiny(tmp_path, max_train_steps=1))


def test_non_image_column_is_a_type_error(tmp_path):
    datasets.Dataset.from_dict({"image": [1, 2, 3]}).save_to_disk(str(tmp_path / "ints"))
    with pytest.raises(TypeError, match=r"Column 'image' holds .*not images"):
        ImageModality().load_dataset(tiny(tmp_path, dataset_name=str(tmp_path / "ints")))


def test_imagefolder_csv_and_disk_sources_give_the_same_tensors(tmp_path):
    images = _digit_images(4)
    folder = tmp_path / "folder"
    folder.mkdir()
    paths = []
    for i, image in enumerate(images):
        paths.append(str(folder / f"{i}.png"))
        image.save(paths[-1])
    (tmp_path / "files.csv").write_text("file\n" + "\n".join(paths) + "\n")
    modality = ImageModality()
    x_folder = _tensors(modality, tiny(tmp_path, train_data_dir=str(folder), dataset_name=None))
    x_csv = _tensors(modality, tiny(tmp_path, dataset_name=str(tmp_path / "files.csv"), image_column="file"))
    assert x_folder.shape == x_csv.shape == (4, 1, 8, 8)
    # imagefolder sorts files; both hold the same four digits
    assert torch.allclose(x_folder.sum(0), x_csv.sum(0))
    expected = torch.from_numpy(np.asarray(images[0], dtype=np.float32)) / 127.5 - 1
    assert torch.allclose(x_csv[0, 0], expected)


def _tensors(modality, config):
    dataset = modality.load_dataset(config)
    return modality.to_tensors(dataset[:], None, config)["x0"]


def test_image_transform_resize_crop_flip_and_channels(tmp_path):
    gradient = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))  # 8 x 16, bright on the right
    image = PIL.Image.fromarray(gradient, mode="L")
    modality = ImageModality()
    rgb = modality.to_tensors({"image": [image]}, None, tiny(tmp_path, channels=3, center_crop=True))["x0"]
    assert rgb.shape == (1, 3, 8, 8) and torch.equal(rgb[0, 0], rgb[0, 2])
    assert rgb.min() >= -1 and rgb.max() <= 1
    assert rgb[0, 0, :, 0].mean() < rgb[0, 0, :, -1].mean()  # center crop keeps the left-to-right ramp
    torch.manual_seed(0)
    flips = [
        modality.to_tensors({"image": [image]}, None, tiny(tmp_path, center_crop=True, random_flip=True))["x0"]
        for _ in range(8)
    ]
    assert any(torch.equal(f, rgb[:, :1]) for f in flips) and any(torch.equal(f, rgb[:, :1].flip(-1)) for f in flips)


def test_list_modalities_puts_the_builtins_first_whatever_was_imported_first(monkeypatch):
    """The Space builds one tab per `list_modalities()` entry and shows the first: a table trained in the same process
    before the Space was built (which registers the tabular modality first) used to put the Tabular tab first, and the
    browser tests then found no image Generate button."""
    from diffusers_xai.modalities import registry

    registry.list_modalities()  # every built-in registered
    monkeypatch.setitem(registry.MODALITIES, "points", type("Points", (), {"name": "points"}))
    scrambled = dict(reversed(list(registry.MODALITIES.items())))  # "points", then the built-ins last to first
    monkeypatch.setattr(registry, "MODALITIES", scrambled)
    assert [m.name for m in registry.list_modalities()] == ["image", "tabular", "timeseries", "points"]


def test_get_modality_imports_on_demand():
    assert isinstance(get_modality("image"), ImageModality)
    assert "diffusers_xai.modalities.image" in sys.modules


def test_checkpoint_listing_ignores_temp_and_incomplete_dirs(tmp_path):
    from diffusers_xai.training import find_latest_checkpoint, list_checkpoints

    for name, complete in (
        ("checkpoint-2", True),
        ("checkpoint-10", True),
        ("checkpoint-12.tmp", True),
        ("checkpoint-11", False),
        ("checkpoint-x", True),
    ):
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2, 10]
    assert find_latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert find_latest_checkpoint(tmp_path / "missing") is None

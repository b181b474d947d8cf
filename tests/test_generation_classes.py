"""Class-conditional generated datasets: sample i of class `class_labels[i mod m]`, guided, resumable, refused
naming the fix when the model cannot condition."""

import datasets
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from diffusers_xai import DiffusionXAIPipeline
from diffusers_xai.cli import main as cli_main
from diffusers_xai.generation import dataset_card, generate_dataset
from diffusers_xai.testing import tiny_pipeline, tiny_tabular_pipeline, tiny_unet

STEPS = 3

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def conditional():
    unet = tiny_unet(seed=0, num_classes=3)
    pipe = DiffusionXAIPipeline(
        unet=unet, scheduler=DDIMScheduler(num_train_timesteps=50), class_names=["a", "b", "c"]
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generate(pipe, out, **kwargs):
    args = {"num_samples": 5, "shard_size": 3, "batch_size": 2, "num_inference_steps": STEPS, "source_model": "tiny"}
    return generate_dataset(pipe, out, **{**args, **kwargs})


def test_images_cycle_the_labels_are_guided_and_carry_a_class_label_column(conditional, tmp_path):
    result = _generate(conditional, tmp_path / "ds", class_labels=["a", "c"], guidance_scale=2.0)
    ds = datasets.load_dataset(str(tmp_path / "ds"), split="train")
    assert ds["label"] == [0, 2, 0, 2, 0] and ds.features["label"].names == ["a", "b", "c"]
    assert result.manifest.settings["class_labels"] == ["a", "c"] and result.manifest.settings["guidance_scale"] == 2.0
    # samples 0 and 1 are the first batch: what the pipeline gives for their seeds, labels and guidance
    gens = [torch.Generator().manual_seed(i) for i in (0, 1)]
    kw = {"num_inference_steps": STEPS, "output_type": "pil"}
    guided = conditional(batch_size=2, generator=gens, class_labels=["a", "c"], guidance_scale=2.0, **kw).images
    for i in (0, 1):
        np.testing.assert_array_equal(np.asarray(ds[i]["image"]), np.asarray(guided[i]))
    gens = [torch.Generator().manual_seed(i) for i in (0, 1)]
    plain = conditional(batch_size=2, generator=gens, class_labels=["a", "c"], **kw).images
    assert not np.array_equal(np.asarray(ds[0]["image"]), np.asarray(plain[0]))  # guidance was applied
    reproduce = dataset_card(result.output_dir, result.manifest).text
    assert "--class_labels a c --guidance_scale 2.0" in reproduce


def test_other_labels_do_not_resume_and_unconditional_models_refuse_labels(conditional, tmp_path):
    _generate(conditional, tmp_path / "ds", class_labels=torch.tensor([0]))  # recorded as the JSON list [0]
    _generate(conditional, tmp_path / "ds", class_labels=[0])  # the same settings: resumes
    first = _generate(conditional, tmp_path / "ds3", class_labels=[0, 1])
    # the same classes spelled as the command line gives them (an index as text, a class name): resumes, as written
    again = _generate(conditional, tmp_path / "ds3", class_labels=["0", "b"])
    assert (again.written, len(again.skipped)) == ([], 2) and again.manifest.settings["class_labels"] == [0, 1]
    assert first.manifest.settings["class_indices"] == [0, 1]
    with pytest.raises(ValueError, match=r"different settings \(class_labels: \[0, 1\] -> \['0', 'c'\]\)"):
        _generate(conditional, tmp_path / "ds3", class_labels=["0", "c"])
    _generate(conditional, tmp_path / "ds2", class_labels=["a"])
    with pytest.raises(ValueError, match=r"different settings \(class_labels: \['a'\] -> \['b'\]\)"):
        _generate(conditional, tmp_path / "ds2", class_labels=["b"])
    with pytest.raises(ValueError, match="Unknown class name 'z'"):
        _generate(conditional, tmp_path / "other", class_labels=["z"])
    with pytest.raises(ValueError, match="this UNet is unconditional"):
        _generate(tiny_pipeline("ddim"), tmp_path / "other", class_labels=[0])
    with pytest.raises(ValueError, match="guides towards `class_labels`; pass class_labels"):
        _generate(conditional, tmp_path / "other", guidance_scale=3.0)
    with pytest.raises(ValueError, match="`class_labels` is empty"):
        _generate(conditional, tmp_path / "other", class_labels=[])
    assert not (tmp_path / "other").exists()  # refused before any work


def test_series_refuse_labels_naming_the_pipeline(tmp_path):
    from diffusers_xai.modalities.timeseries import TimeSeriesXAIPipeline
    from diffusers_xai.modalities.timeseries.data import make_sines
    from diffusers_xai.modalities.timeseries.preprocessor import TimeSeriesPreprocessor
    from diffusers_xai.models import TimeSeriesDenoiser

    pre = TimeSeriesPreprocessor.fit(make_sines(16, sequence_length=8), sequence_length=8)
    model = TimeSeriesDenoiser(in_channels=5, sample_size=8, hidden_dim=8, num_layers=1, num_heads=2)
    pipe = TimeSeriesXAIPipeline.from_denoiser(model, pre, "ddim", num_train_timesteps=20)
    with pytest.raises(ValueError, match="a TimeSeriesXAIPipeline is not class-conditional; drop them"):
        _generate(pipe, tmp_path / "ds", class_labels=[0])


def test_cli_tables_of_one_class_given_as_text_with_guidance(tmp_path, capsys):
    pipe, _ = tiny_tabular_pipeline(null_class=True)
    pipe.save_pretrained(tmp_path / "pipe")
    argv = ["generate", "--pipeline", str(tmp_path / "pipe"), "--num_samples", "6", "--out", str(tmp_path / "ds")]
    argv += ["--num_inference_steps", str(STEPS), "--class_labels", "2", "--guidance_scale", "1.5"]
    assert cli_main(argv) == 0, capsys.readouterr().err
    rows = datasets.load_dataset(str(tmp_path / "ds"), split="train").to_pandas()
    assert rows["cultivar"].tolist() == [2] * 6  # "2" on the command line is the level 2 of the int column
    with pytest.raises(SystemExit) as err:
        cli_main([*argv[:-1], "0.5"])
    assert err.value.code == 2
    assert "argument --guidance_scale: must be a number >= 1, got '0.5'" in capsys.readouterr().err
    bad = [*argv[:-4], "--class_labels", "9"]
    bad[6] = str(tmp_path / "other")
    assert cli_main(bad) == 2
    assert "Column 'cultivar' has levels ['9'] unseen at fit time" in capsys.readouterr().err


def test_guided_datasets_carry_one_summary_per_sample(conditional, tmp_path):
    """A guided trace holds one row per sample (the conditional half of [null; y]); it held both halves, and the
    attention entropies of 3 samples came out 6 long (pyarrow refused the shard)."""
    kwargs = {"class_labels": ["a", "c"], "explain": True, "summary_steps": STEPS}
    guided = _generate(conditional, tmp_path / "guided", guidance_scale=2.0, **kwargs)
    plain = _generate(conditional, tmp_path / "plain", **kwargs)
    guided, plain = (datasets.load_dataset(str(r.output_dir), split="train") for r in (guided, plain))
    assert len(guided["attention_entropy"]) == len(guided["commit_step"]) == 5
    assert guided["attention_entropy"] != plain["attention_entropy"]  # the guided x_t differ after the first step

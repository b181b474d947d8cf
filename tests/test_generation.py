"""Sharded, resumable, deterministic dataset generation (in-process; the multi-process runs are in
tests/test_multiprocess_generation.py)."""

import hashlib
import json
import os

import datasets
import numpy as np
import PIL.Image
import pyarrow.parquet as pq
import pytest
import torch
from huggingface_hub import DatasetCard

from diffusers_xai.capture import Trace, TraceConfig, TraceStep
from diffusers_xai.cli import main as cli_main
from diffusers_xai.evaluation.memorization import memorization_test
from diffusers_xai.evaluation.report import EvaluationReport
from diffusers_xai.generation import (
    MANIFEST_NAME,
    GenerationManifest,
    attention_entropy,
    dataset_card,
    generate_dataset,
    model_fingerprint,
    push_dataset_to_hub,
    sample_commit_steps,
    shard_path,
    size_category,
)
from diffusers_xai.testing import tiny_pipeline
from tests import hub_fixtures

local_hub = hub_fixtures.local_hub  # registers the fixture in this module

STEPS = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _digests(paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def _generate(pipe, out, **kwargs):
    args = {"num_samples": 7, "shard_size": 3, "batch_size": 2, "num_inference_steps": STEPS, "source_model": "tiny"}
    args.update(kwargs)
    return generate_dataset(pipe, out, **args)


# ---- the dataset ----
def test_dataset_loads_with_pil_images_and_metadata(pipe, tmp_path):
    result = _generate(pipe, tmp_path / "ds", batch_size=1)
    assert [p.name for p in result.shard_paths] == [f"train-0000{k}-of-00003.parquet" for k in range(3)]
    assert [pq.read_metadata(p).num_rows for p in result.shard_paths] == [3, 3, 1]
    assert result.written == [0, 1, 2] and result.skipped == []

    by_dir = datasets.load_dataset(str(tmp_path / "ds"), split="train")
    by_parquet = datasets.load_dataset("parquet", data_dir=str(tmp_path / "ds" / "data"), split="train")
    assert by_dir.num_rows == by_parquet.num_rows == 7
    assert isinstance(by_dir.features["image"], datasets.Image)
    assert by_dir["sample_index"] == list(range(7)) and by_dir["seed"] == list(range(7))
    assert set(by_dir["scheduler"]) == {"ddpm"} and set(by_dir["num_inference_steps"]) == {STEPS}
    assert set(by_dir["model_revision"]) == {model_fingerprint(pipe)}

    # sample i is exactly what the pipeline gives for seed i on its own
    for i in (0, 4, 6):
        image = by_dir[i]["image"]
        assert isinstance(image, PIL.Image.Image) and image.size == (8, 8)
        alone = pipe(generator=torch.Generator().manual_seed(i), num_inference_steps=STEPS, output_type="pil")
        np.testing.assert_array_equal(np.asarray(image), np.asarray(alone.images[0]))
        assert by_parquet[i]["image"].tobytes() == image.tobytes()


def test_shards_do_not_depend_on_which_other_shards_a_run_writes(pipe, tmp_path):
    full = _generate(pipe, tmp_path / "full")
    # another directory: only shard 2 is missing after deleting it; shards 0 and 1 come from a different run
    part = _generate(pipe, tmp_path / "part")
    os.remove(part.shard_paths[2])
    rerun = _generate(pipe, tmp_path / "part")
    assert rerun.written == [2] and rerun.skipped == [0, 1]
    assert _digests(rerun.shard_paths) == _digests(full.shard_paths)


def test_resume_skips_finished_shards_and_ignores_temp_files(pipe, tmp_path):
    out = tmp_path / "ds"
    first = _generate(pipe, out)
    kept = {k: os.stat(first.shard_paths[k]).st_mtime_ns for k in (0, 2)}
    os.remove(first.shard_paths[1])
    # what a process killed mid-write leaves behind: a hidden temp file that no reader may pick up
    stale = out / "data" / ".train-00001-of-00003.parquet.abc123.tmp"
    stale.write_bytes(b"half a parquet file")
    loaded = datasets.load_dataset("parquet", data_dir=str(out / "data"), split="train")
    assert loaded.num_rows == 4  # shards 0 and 2 only; the temp file is not read

    second = _generate(pipe, out)
    assert second.written == [1] and second.skipped == [0, 2]
    assert {k: os.stat(second.shard_paths[k]).st_mtime_ns for k in (0, 2)} == kept
    assert not stale.exists()
    assert datasets.load_dataset(str(out), split="train")["sample_index"] == list(range(7))


def test_batch_size_caveat_is_a_recorded_setting(pipe, tmp_path):
    _generate(pipe, tmp_path / "ds", batch_size=2)
    with pytest.raises(ValueError, match=r"different settings \(batch_size: 2 -> 3\)"):
        _generate(pipe, tmp_path / "ds", batch_size=3)


# ---- bad input: errors before any work ----
@pytest.mark.parametrize("value", [0, -3, 2.5, "10", True, None])
def test_num_samples_must_be_a_positive_int(pipe, tmp_path, value):
    with pytest.raises(ValueError, match=r"`num_samples` must be a positive integer, got"):
        _generate(pipe, tmp_path / "ds", num_samples=value)
    assert not (tmp_path / "ds").exists()


def test_shard_size_zero_is_refused(pipe, tmp_path):
    with pytest.raises(ValueError, match=r"`shard_size` must be a positive integer, got 0"):
        _generate(pipe, tmp_path / "ds", shard_size=0)
    assert not (tmp_path / "ds").exists()


def test_directory_of_another_model_is_refused_before_work(pipe, tmp_path):
    out = tmp_path / "ds"
    first = _generate(pipe, out)
    before = {p: os.stat(p).st_mtime_ns for p in first.shard_paths}
    other = tiny_pipeline("ddpm", seed=1)
    with pytest.raises(ValueError, match=r"holds a dataset generated by a different model .*Choose a new --out"):
        _generate(other, out)
    assert {p: os.stat(p).st_mtime_ns for p in first.shard_paths} == before
    # a different scheduler is a different setting, not a different model
    ddim = tiny_pipeline("ddpm")
    ddim.set_scheduler("ddim")
    assert model_fingerprint(ddim) == model_fingerprint(pipe)
    with pytest.raises(ValueError, match=r"different settings \(.*scheduler: 'ddpm' -> 'ddim'"):
        _generate(ddim, out)


def test_foreign_parquet_without_manifest_is_refused(pipe, tmp_path):
    (tmp_path / "ds" / "data").mkdir(parents=True)
    pq.write_table(datasets.Dataset.from_dict({"x": [1]}).data.table, tmp_path / "ds" / "data" / "x.parquet")
    with pytest.raises(ValueError, match="no generation manifest"):
        _generate(pipe, tmp_path / "ds")


def test_fingerprint_ignores_where_the_model_was_saved(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "a")
    loaded = type(pipe).from_pretrained(tmp_path / "a")
    assert model_fingerprint(loaded) == model_fingerprint(pipe)
    assert model_fingerprint(tiny_pipeline("ddpm", seed=3)) != model_fingerprint(pipe)


# ---- explanation summaries ----
def _trace(x0s, attentions=None, num_inference_steps=None):
    trace = Trace(config=TraceConfig(), num_inference_steps=num_inference_steps or len(x0s))
    for i, x0 in enumerate(x0s):
        step = TraceStep(step_index=i, timestep=100 - i, pred_original_sample=x0)
        if attentions is not None:
            step.attentions["mid"] = attentions[i]
        trace.steps.append(step)
    return trace


def test_attention_entropy_is_one_for_uniform_and_zero_for_one_hot():
    uniform = torch.full((2, 3, 4), 0.25)  # [B, Q, K]
    one_hot = torch.zeros(2, 3, 4)
    one_hot[..., 1] = 1.0
    mixed = torch.stack([uniform[0], one_hot[0]])  # sample 0 uniform, sample 1 one-hot
    x0 = torch.zeros(2, 1, 2, 2)
    assert torch.allclose(attention_entropy(_trace([x0], [uniform])), torch.ones(2))
    assert torch.allclose(attention_entropy(_trace([x0], [one_hot])), torch.zeros(2), atol=1e-6)
    # averaged over steps: one uniform step and one mixed step -> (1 + 1) / 2 and (1 + 0) / 2
    assert torch.allclose(attention_entropy(_trace([x0, x0], [uniform, mixed])), torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="no attention"):
        attention_entropy(_trace([x0]))


def test_commit_step_is_first_step_that_stays_within_eps():
    final = torch.zeros(2, 1, 2, 2)
    far, near = torch.ones(2, 1, 2, 2), torch.full((2, 1, 2, 2), 0.05)
    # sample 0: far, near, far, near, final -> commits at step 3; sample 1: far, near, near, near -> step 1
    x0s = [far.clone(), near.clone(), far.clone(), near.clone(), final.clone()]
    x0s[2][1] = 0.05
    commit = sample_commit_steps(_trace(x0s), eps=0.1)
    assert commit.tolist() == [3, 1]
    # a single element outside the tolerance keeps the sample uncommitted
    x0s[3][0, 0, 1, 1] = 0.5
    assert sample_commit_steps(_trace(x0s), eps=0.1).tolist() == [4, 1]


def test_explained_dataset_has_summary_columns(pipe, tmp_path):
    result = _generate(pipe, tmp_path / "ds", num_samples=4, shard_size=4, batch_size=4, explain=True)
    ds = datasets.load_dataset("parquet", data_dir=str(result.output_dir / "data"), split="train")
    assert ds.features["attention_entropy"].dtype == "float32"
    entropy = np.asarray(ds["attention_entropy"])
    assert ((entropy > 0) & (entropy <= 1)).all()
    commit = np.asarray(ds["commit_step"])
    assert ((commit >= 0) & (commit < STEPS)).all()
    np.testing.assert_allclose(ds["commit_fraction"], commit / STEPS, rtol=1e-6)
    # the same numbers as computing them from a trace of the batch
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    out = pipe(batch_size=4, generator=gens, num_inference_steps=STEPS, trace=TraceConfig(attention=True))
    np.testing.assert_allclose(entropy, attention_entropy(out.trace).numpy(), rtol=1e-3)
    # summaries do not change the samples
    plain = _generate(pipe, tmp_path / "plain", num_samples=4, shard_size=4, batch_size=4)
    plain_images = datasets.load_dataset(str(plain.output_dir), split="train")["image"]
    assert [np.asarray(a).tobytes() for a in plain_images] == [np.asarray(b).tobytes() for b in ds["image"]]


# ---- dataset card ----
def test_size_categories():
    assert [size_category(n) for n in (1, 999, 1000, 54_321, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]


def test_dataset_card_metadata_and_sections(pipe, tmp_path):
    result = _generate(pipe, tmp_path / "ds", card_kwargs={"license": "apache-2.0"})
    card = DatasetCard.load(result.output_dir / "README.md")
    assert card.data.license == "apache-2.0"
    assert card.data.task_categories == ["unconditional-image-generation"]
    assert card.data.size_categories == ["n<1K"]
    assert card.data.source_model == "tiny"
    assert card.data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}
    ]
    for section in ("## How it was generated", "## Evaluation", "## Memorisation check", "## Limitations"):
        assert section in card.text
    assert "| samples | 7 (seeds 0 to 6) |" in card.text
    assert "No evaluation was attached" in card.text and "No memorisation check was attached" in card.text

    report = EvaluationReport(modality="image", num_real=100, num_generated=7, dataset_name="digits")
    report.add("FID (digits-CNN features)", 12.3456, key="fid")
    memorisation = memorization_test(torch.rand(20, 4), torch.rand(30, 4), k=5)
    card = dataset_card(result.output_dir, result.manifest, evaluation=report, memorisation=memorisation)
    assert "| FID (digits-CNN features) | 12.35 |" in card.text
    assert "7 generated vs 100 real samples of digits." in card.text
    assert f"| num_flagged | {int(memorisation.flagged.sum())} |" in card.text
    assert f"| median_ratio | {float(memorisation.ratio.median()):.4g} |" in card.text


def test_manifest_records_model_identity(pipe, tmp_path):
    result = _generate(pipe, tmp_path / "ds", model_revision="abc123")
    data = json.loads((result.output_dir / MANIFEST_NAME).read_text())
    assert data["model_fingerprint"] == model_fingerprint(pipe)
    assert data["model_revision"] == "abc123" and data["pipeline_class"] == "DiffusionXAIPipeline"
    assert data["settings"]["shard_size"] == 3 and data["num_shards"] == 3
    assert GenerationManifest.load(result.output_dir) == result.manifest
    assert set(datasets.load_dataset(str(result.output_dir), split="train")["model_revision"]) == {"abc123"}


# ---- CLI ----
def test_cli_generate_and_resume(pipe, tmp_path, capsys):
    pipe.save_pretrained(tmp_path / "pipe")
    argv = ["generate", "--pipeline", str(tmp_path / "pipe"), "--num_samples", "5", "--out", str(tmp_path / "ds")]
    argv += ["--shard_size", "2", "--num_inference_steps", str(STEPS), "--scheduler", "ddim", "--explain"]
    assert cli_main(argv) == 0
    assert "3 shards, 5 samples (0 shards were already complete)" in capsys.readouterr().out
    ds = datasets.load_dataset(str(tmp_path / "ds"), split="train")
    assert ds.num_rows == 5 and set(ds["scheduler"]) == {"ddim"} and "commit_step" in ds.column_names
    os.remove(shard_path(tmp_path / "ds", 1, 3))
    assert cli_main(argv) == 0
    assert "(2 shards were already complete)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--num_samples", "0", "argument --num_samples: must be a positive integer, got '0'"),
        ("--num_samples", "ten", "argument --num_samples: must be a positive integer, got 'ten'"),
        ("--shard_size", "0", "argument --shard_size: must be a positive integer, got '0'"),
    ],
)
def test_cli_rejects_bad_numbers(tmp_path, capsys, flag, value, message):
    argv = ["generate", "--pipeline", "p", "--num_samples", "4", "--out", str(tmp_path / "ds"), flag, value]
    with pytest.raises(SystemExit) as err:
        cli_main(argv)
    assert err.value.code == 2 and message in capsys.readouterr().err


def test_cli_refuses_push_without_repo_and_missing_pipeline(tmp_path, capsys):
    base = ["generate", "--num_samples", "4", "--out", str(tmp_path / "ds")]
    assert cli_main([*base, "--pipeline", str(tmp_path / "nope"), "--push_to_hub"]) == 2
    assert "--push_to_hub needs --hub_dataset_id" in capsys.readouterr().err
    assert cli_main([*base, "--pipeline", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


# ---- Hub round trip through the local Hub server ----
def test_push_then_load_dataset_from_hub(pipe, tmp_path, local_hub):
    result = _generate(pipe, tmp_path / "ds", explain=True)
    repo_id = f"{local_hub.user}/synthetic-tiny"
    url = push_dataset_to_hub(result.output_dir, repo_id, license="mit", memorisation={"near-copies": 0})
    assert repo_id in url
    files = set(local_hub.list_files(repo_id, repo_type="dataset")) - {".gitattributes"}  # made by create_repo
    assert files == {"README.md", MANIFEST_NAME, *(f"data/{p.name}" for p in result.shard_paths)}

    pulled = datasets.load_dataset(repo_id, split="train")
    local = datasets.load_dataset(str(result.output_dir), split="train")
    assert pulled.num_rows == 7
    for name in local.column_names:
        if name == "image":
            assert [np.asarray(a).tobytes() for a in pulled[name]] == [np.asarray(b).tobytes() for b in local[name]]
        else:
            assert pulled[name] == local[name]
    card = DatasetCard.load(repo_id)
    assert card.data.license == "mit" and card.data.source_model == "tiny"
    assert "| near-copies | 0 |" in card.text and f'load_dataset("{repo_id}"' in card.text


def test_cli_records_the_hub_revision_of_the_model(pipe, tmp_path, local_hub, capsys):
    from huggingface_hub import HfApi

    repo_id = f"{local_hub.user}/tiny-ddpm"
    pipe.save_pretrained(tmp_path / "pipe")
    HfApi().create_repo(repo_id)
    HfApi().upload_folder(folder_path=tmp_path / "pipe", repo_id=repo_id)
    argv = ["generate", "--pipeline", repo_id, "--num_samples", "2", "--out", str(tmp_path / "ds")]
    assert cli_main([*argv, "--num_inference_steps", str(STEPS)]) == 0
    ds = datasets.load_dataset(str(tmp_path / "ds"), split="train")
    assert set(ds["model_revision"]) == {local_hub.head(repo_id)}
    card = DatasetCard.load(tmp_path / "ds" / "README.md")
    assert card.data.source_model == repo_id and local_hub.head(repo_id) in card.text


def test_push_refuses_incomplete_dataset(pipe, tmp_path):
    result = _generate(pipe, tmp_path / "ds")
    os.remove(result.shard_paths[0])
    with pytest.raises(ValueError, match="holds 2 of 3 shards"):
        push_dataset_to_hub(result.output_dir, "someone/x")

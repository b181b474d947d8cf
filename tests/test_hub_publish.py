"""publish() end to end against the local Hub server: push, re-download by repo id, identical samples, the card and
figures in the repo, the community pipeline through stock diffusers, and every failure mode of a push."""

import json
import logging
import os
import shutil
from pathlib import Path

import httpx2
import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from huggingface_hub import ModelCard, constants, hf_hub_download, metadata_load, model_info
from huggingface_hub.errors import RepositoryNotFoundError

from diffusers_xai import DiffusionXAIPipeline
from diffusers_xai.cli import main as cli_main
from diffusers_xai.hub import (
    SUMMARY_PATH,
    ExplanationCardData,
    HubPushError,
    community_pipeline_file,
    publish,
    save_pretrained_with_card,
)
from diffusers_xai.testing import tiny_pipeline
from tests import hub_fixtures
from tests.hub_fixtures import write_png

local_hub = hub_fixtures.local_hub  # registers the fixture in this module

REPO = "xai-tester/tiny-digits"
COMMUNITY_FILE = Path(__file__).parents[1] / "pipelines" / "diffusion_xai.py"


def sample(pipe, seed=0):
    return pipe(batch_size=2, generator=torch.Generator().manual_seed(seed), num_inference_steps=3, output_type="np")


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=3)


@pytest.fixture
def card(tmp_path):
    figs = tmp_path / "figures"
    figs.mkdir()
    return ExplanationCardData(
        training={"dataset": "sklearn digits 8x8", "config": {"learning_rate": 1e-3}},
        samples=write_png(figs / "grid.png", 0),
        figures={name: write_png(figs / f"{name}.png", i) for i, name in enumerate(["attention", "gradcam"], 1)},
        faithfulness={"deletion_auc": 0.25},
        eval_results=[{"metric_type": "fid", "metric_value": 7.5, "feature_extractor": "digits-cnn 64-d"}],
    )


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_publish_then_from_pretrained_by_repo_id(local_hub, pipe, card, tmp_path):
    info = publish(pipe, REPO, card, save_directory=tmp_path / "saved")
    assert info.oid == local_hub.head(REPO)
    files = local_hub.list_files(REPO)
    for path in (
        "README.md",
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "diffusion_xai.py",
        "samples/grid.png",
        "explanations/attention.png",
        "explanations/gradcam.png",
        SUMMARY_PATH,
    ):
        assert path in files
    # what was pushed is exactly the local save
    saved = tree_bytes(tmp_path / "saved")
    assert {p: local_hub.read(REPO, p) for p in saved} == saved
    assert local_hub.read(REPO, "explanations/gradcam.png") == card.figures["gradcam"].read_bytes()

    loaded = DiffusionXAIPipeline.from_pretrained(REPO)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(sample(loaded).images, sample(pipe).images)  # bit-identical

    meta = metadata_load(hf_hub_download(REPO, "README.md"))
    assert meta["library_name"] == "diffusers"
    assert meta["pipeline_tag"] == "unconditional-image-generation"
    assert set(meta["tags"]) >= {"diffusers-xai", "explainability", "synthetic-data", "image"}
    metric = meta["model-index"][0]["results"][0]["metrics"][0]
    assert metric == {"type": "fid", "value": 7.5, "name": "fid (digits-cnn 64-d features)"}
    hub_card = ModelCard.load(REPO)
    hub_card.validate()  # against the server's /api/validate-yaml
    assert f'DiffusionXAIPipeline.from_pretrained("{REPO}")' in hub_card.text
    summary = json.loads(Path(hf_hub_download(REPO, SUMMARY_PATH)).read_text())
    assert summary["repo_id"] == REPO and summary["faithfulness"] == {"deletion_auc": 0.25}
    assert set(summary["figures"]) == {"attention", "gradcam"}
    assert model_info(REPO).card_data.library_name == "diffusers"


def test_stock_diffusion_pipeline_loads_with_community_file(local_hub, pipe):
    publish(pipe, REPO)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        DiffusionPipeline.from_pretrained(REPO, custom_pipeline="diffusion_xai")
    loaded = DiffusionPipeline.from_pretrained(REPO, custom_pipeline="diffusion_xai", trust_remote_code=True)
    assert type(loaded) is DiffusionXAIPipeline
    loaded.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    out = loaded(batch_size=2, generator=generator, num_inference_steps=3, output_type="np", trace=True)
    np.testing.assert_array_equal(out.images, sample(pipe).images)
    assert out.trace.stack("pred_original_sample").shape == (3, 2, 1, 8, 8)


def test_community_file_loads_offline_from_a_local_folder(pipe, tmp_path, monkeypatch):
    hub_fixtures.point_hf_at(None, None, tmp_path / "cache", monkeypatch)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # any network call would raise
    folder = save_pretrained_with_card(pipe, tmp_path / "saved")
    assert (folder / "diffusion_xai.py").read_bytes() == community_pipeline_file("DiffusionXAIPipeline").read_bytes()
    assert COMMUNITY_FILE.read_bytes() == (folder / "diffusion_xai.py").read_bytes()  # pipelines/ is the same file
    expected = sample(pipe).images
    for custom in ("diffusion_xai", str(COMMUNITY_FILE)):
        loaded = DiffusionPipeline.from_pretrained(folder, custom_pipeline=custom, trust_remote_code=True)
        assert type(loaded) is DiffusionXAIPipeline
        loaded.set_progress_bar_config(disable=True)
        np.testing.assert_array_equal(sample(loaded).images, expected)


def test_token_is_never_written_or_logged(local_hub, pipe, card, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    token = local_hub.token
    card.training["config"]["hub_token"] = token  # as a training script might pass its args along
    publish(pipe, REPO, card, save_directory=tmp_path / "saved")
    assert cli_main(["push", str(tmp_path / "saved"), "--repo-id", "xai-tester/again"]) == 0
    DiffusionXAIPipeline.from_pretrained(REPO)
    # the local save, the server's storage and the HF caches (hub downloads, diffusers modules)
    roots = [tmp_path, local_hub.store.root.parent]
    written = [p for root in roots for p in root.rglob("*") if p.is_file()]
    assert len(written) > 40
    for path in written:
        assert token.encode() not in path.read_bytes(), path
    captured = capsys.readouterr()
    assert token not in caplog.text + captured.out + captured.err
    assert "hub_token" not in local_hub.read(REPO, "README.md").decode()


def test_private_repo(local_hub, pipe):
    publish(pipe, REPO, private=True)
    assert local_hub.is_private(REPO)
    assert model_info(REPO).private is True
    with pytest.raises(RepositoryNotFoundError):
        model_info(REPO, token=False)


def test_repo_id_without_namespace_uses_the_token_owner(local_hub, pipe):
    info = publish(pipe, "tiny-digits")
    assert info.repo_url.repo_id == REPO
    assert f'from_pretrained("{REPO}")' in local_hub.read(REPO, "README.md").decode()


@pytest.mark.parametrize("repo_id", ["bad repo/name", "a/b/c", "x" * 97, "user/-name-", 42])
def test_invalid_repo_id_is_refused_before_anything_happens(local_hub, pipe, tmp_path, repo_id):
    error = TypeError if not isinstance(repo_id, str) else ValueError
    with pytest.raises(error, match="repo_id"):
        publish(pipe, repo_id, save_directory=tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
    assert local_hub.requests == []


def test_missing_token(local_hub, pipe, tmp_path, monkeypatch):
    hub_fixtures.point_hf_at(local_hub.endpoint, None, tmp_path / "cache", monkeypatch)
    with pytest.raises(ValueError, match="No Hugging Face token found: set the HF_TOKEN"):
        publish(pipe, REPO, save_directory=tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        publish(pipe, REPO, token="hf_x", timeout=0)


def test_server_error_keeps_the_local_save_and_push_can_be_retried(local_hub, pipe, card, tmp_path, capsys):
    local_hub.inject("POST", r"/commit/", status=500)
    with pytest.raises(HubPushError, match="500") as excinfo:
        publish(pipe, REPO, card, save_directory=tmp_path / "saved")
    err = excinfo.value
    assert err.local_dir == tmp_path / "saved" and err.repo_id == REPO
    assert f"diffusers-xai push {tmp_path / 'saved'} --repo-id {REPO}" in str(err)
    assert local_hub.list_files(REPO) == [".gitattributes"]  # nothing was committed

    reference = tmp_path / "reference"
    save_pretrained_with_card(pipe, reference, card, repo_id=REPO)
    assert tree_bytes(tmp_path / "saved") == tree_bytes(reference)  # complete and untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "reference", "saved"]  # no leftovers

    assert cli_main(["push", str(tmp_path / "saved"), "--repo-id", REPO]) == 0
    assert f"{local_hub.endpoint}/{REPO}/commit/" in capsys.readouterr().out
    assert {p: local_hub.read(REPO, p) for p in tree_bytes(reference)} == tree_bytes(reference)


def test_lfs_upload_failure_is_a_push_error(local_hub, pipe, tmp_path):
    local_hub.inject("PUT", r"^/lfs-objects/", status=403)  # a 4xx is not retried
    with pytest.raises(HubPushError, match="Error while uploading") as excinfo:
        publish(pipe, REPO, save_directory=tmp_path / "saved")
    assert excinfo.value.local_dir == tmp_path / "saved"
    assert (tmp_path / "saved" / "README.md").is_file()


def test_timeout_on_a_stalled_server(local_hub, pipe, tmp_path):
    local_hub.inject("POST", r"/commit/", delay=30.0)
    with pytest.raises(HubPushError, match="ReadTimeout") as excinfo:
        publish(pipe, REPO, timeout=0.5)
    assert isinstance(excinfo.value.__cause__, httpx2.TimeoutException)
    kept = excinfo.value.local_dir
    assert (kept / "model_index.json").is_file()  # the temporary save is kept for a retry
    shutil.rmtree(kept.parent)


def test_preupload_5xx_is_retried(local_hub, pipe):
    local_hub.inject("POST", r"/preupload/", status=503)
    publish(pipe, REPO)
    assert [status for method, path, status in local_hub.requests if "/preupload/" in path] == [503, 200]
    assert "README.md" in local_hub.list_files(REPO)


def test_save_pretrained_with_card_into_an_existing_folder(pipe, card, tmp_path, monkeypatch):
    target = tmp_path / "saved"
    (target / "checkpoint-10").mkdir(parents=True)
    (target / "checkpoint-10" / "optimizer.bin").write_bytes(b"optimizer state")
    (target / "README.md").write_text("old card")
    before = tree_bytes(target)
    bad = ExplanationCardData(figures={"gradcam": tmp_path / "missing.png"})
    with pytest.raises(ValueError, match="does not exist"):
        save_pretrained_with_card(pipe, target, bad)
    assert tree_bytes(target) == before

    # a failure in the middle of moving the new save in puts every old entry back
    real_replace = os.replace
    calls = []

    def flaky_replace(src, dst):  # fails the third move of a new entry into `target`
        if Path(dst).parent == target and Path(src).parent.name.startswith(".saved.staging-"):
            calls.append(dst)
            if len(calls) == 3:
                raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained_with_card(pipe, target, card)
    monkeypatch.setattr(os, "replace", real_replace)
    assert [Path(c).name for c in calls] == ["README.md", "diffusion_xai.py", "explanations"]
    assert tree_bytes(target) == before

    save_pretrained_with_card(pipe, target, card)
    after = tree_bytes(target)
    assert after["checkpoint-10/optimizer.bin"] == b"optimizer state"  # not ours: kept
    assert after["README.md"] != b"old card" and "unet/diffusion_pytorch_model.safetensors" in after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "saved"]  # no staging/backup folders left
    with pytest.raises(TypeError, match="DiffusionPipeline"):
        save_pretrained_with_card("not a pipeline", target)
    with pytest.raises(ValueError, match="not an existing .py file"):
        save_pretrained_with_card(pipe, target, community_pipeline=tmp_path / "nope.py")


def test_cli_push_renders_card_for_the_target_repo(local_hub, pipe, card, tmp_path, capsys):
    folder = save_pretrained_with_card(pipe, tmp_path / "saved", card)  # card written without a repo id
    figs = tmp_path / "more"
    figs.mkdir()
    write_png(figs / "trajectory.png", 9)
    (tmp_path / "card.json").write_text(json.dumps({"memorization": {"nn_l2_min": 0.5}}))
    code = cli_main(
        [
            "push",
            str(folder),
            "--repo-id",
            REPO,
            "--private",
            "--figures-dir",
            str(figs),
            "--card-json",
            str(tmp_path / "card.json"),
        ]
    )
    assert code == 0
    readme = local_hub.read(REPO, "README.md").decode()
    assert f'from_pretrained("{REPO}")' in readme and "<namespace>/<repo>" not in readme
    assert "![trajectory](explanations/trajectory.png)" in readme and "| nn_l2_min | 0.5 |" in readme
    assert "![gradcam](explanations/gradcam.png)" in readme  # earlier figures are kept
    assert local_hub.read(REPO, "explanations/trajectory.png") == (figs / "trajectory.png").read_bytes()
    assert local_hub.is_private(REPO)

    assert cli_main(["push", str(folder), "--repo-id", "not a repo"]) == 2
    assert "Invalid repo_id 'not a repo'" in capsys.readouterr().err
    assert cli_main(["push", str(tmp_path / "more"), "--repo-id", REPO]) == 2
    assert "no model_index.json" in capsys.readouterr().err

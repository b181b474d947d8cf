"""Security: what a push uploads, which checkpoints a run resumes from, where tokens come from.

Each test here was seen failing on the code before the fix it guards (see the issue "Security and reliability")."""

import json
import os

import pytest

from diffusers_xai.cli import main as cli_main
from diffusers_xai.hub import SUMMARY_PATH, ExplanationCardData, publish, save_pretrained_with_card
from diffusers_xai.testing import tiny_pipeline
from diffusers_xai.training import TrainingConfig
from diffusers_xai.training.checkpointing import TRAINER_STATE_NAME, resolve_checkpoint
from tests import hub_fixtures
from tests.hub_fixtures import write_png
from tests.test_training import TINY, tiny

local_hub = hub_fixtures.local_hub  # registers the fixture in this module

REPO = "xai-tester/crafted"


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=3)


@pytest.fixture
def folder(pipe, tmp_path):
    """A saved pipeline with a card written for REPO (so `push` would upload it as is) and one figure."""
    (tmp_path / "figs").mkdir()
    card = ExplanationCardData(figures={"gradcam": write_png(tmp_path / "figs" / "gradcam.png")})
    return save_pretrained_with_card(pipe, tmp_path / "downloaded", card, repo_id=REPO)


@pytest.fixture
def secret(tmp_path):
    """A readable file outside the folder; a valid PNG, so only the containment check can refuse it."""
    (tmp_path / "home").mkdir()
    return write_png(tmp_path / "home" / "id_rsa.png", seed=7)


def _edit_summary(folder, **changes):
    summary = json.loads((folder / SUMMARY_PATH).read_text())
    summary.update(changes)
    (folder / SUMMARY_PATH).write_text(json.dumps(summary))


def _crafted(folder, secret, how):
    if how == "absolute":
        _edit_summary(folder, figures={"gradcam": {"path": str(secret), "caption": "x"}})
    elif how == "dotdot":
        _edit_summary(folder, figures={"gradcam": {"path": "explanations/../../home/id_rsa.png", "caption": "x"}})
    elif how == "samples":
        _edit_summary(folder, samples=os.path.relpath(secret, folder))
    elif how == "symlink":
        (folder / "explanations" / "gradcam.png").unlink()
        (folder / "explanations" / "gradcam.png").symlink_to(secret)
    elif how == "not_png":
        (folder / "explanations" / "gradcam.png").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    return {"absolute": str(secret), "dotdot": "../../home", "samples": "home/id_rsa.png"}.get(how, "gradcam")


@pytest.mark.parametrize("how", ["absolute", "dotdot", "samples", "symlink", "not_png"])
@pytest.mark.parametrize("card_from_folder", [False, True])
def test_push_of_a_crafted_folder_uploads_nothing(local_hub, folder, secret, how, card_from_folder, capsys):
    named = _crafted(folder, secret, how)
    # card_from_folder: the summary was written for another repo, so publish() re-renders the card from it
    repo_id = "xai-tester/other" if card_from_folder else REPO
    with pytest.raises(ValueError, match="inside|symlink|PNG") as err:
        publish(folder, repo_id)
    assert named in str(err.value)
    assert cli_main(["push", str(folder), "--repo-id", repo_id]) == 2
    assert named in capsys.readouterr().err
    for repo in (REPO, "xai-tester/other"):  # the repo was not even created
        assert local_hub.store.load_repo("model", repo) is None


def test_push_uploads_only_the_allow_list(local_hub, folder):
    for junk in ("notes.txt", ".env", "unet/diffusion_pytorch_model.bin", "optimizer.bin", "checkpoint-2/x.json"):
        (folder / junk).parent.mkdir(exist_ok=True)
        (folder / junk).write_text("not for the Hub")
    publish(folder, REPO)
    assert local_hub.list_files(REPO) == [
        ".gitattributes",
        "README.md",
        "diffusion_xai.py",
        "explanations/gradcam.png",
        "explanations/summary.json",
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]


def test_card_sources_must_be_pngs(pipe, tmp_path):
    text = tmp_path / "grid.png"
    text.write_text("a text file named .png")
    with pytest.raises(ValueError, match=r"samples must be a PNG file, got grid.png"):
        save_pretrained_with_card(pipe, tmp_path / "out", ExplanationCardData(samples=text))
    with pytest.raises(ValueError, match=r"Figure 'gradcam' must be a PNG file, got grid.png"):
        save_pretrained_with_card(pipe, tmp_path / "out", ExplanationCardData(figures={"gradcam": text}))
    assert not (tmp_path / "out").exists()


# ---- tokens: only HF_TOKEN / `hf auth login`, never a config key or a flag ----
SECRET = "hf_doNotLeakThisToken123"


def test_train_refuses_a_token_flag_or_key_without_echoing_it(tmp_path, capsys):
    argv = ["train", "--dataset_name", "sklearn-digits", "--output_dir", str(tmp_path / "o"), "--hub_token", SECRET]
    assert cli_main([*argv, "--max_train_steps", "0"]) == 2  # refused before any other check
    err = capsys.readouterr().err
    assert "`hub_token` is not a training key" in err and "HF_TOKEN" in err and SECRET not in err
    with pytest.raises(ValueError, match="hf auth login") as info:
        TrainingConfig.from_dict({**TINY, "hub_token": SECRET})
    assert SECRET not in str(info.value)
    assert "hub_token" not in TrainingConfig.__dataclass_fields__
    assert not (tmp_path / "o").exists()


# ---- resume: accelerate's optimizer/RNG pickles are loaded only from the run's own checkpoints ----
def _fake_checkpoint(path):
    path.mkdir(parents=True)
    (path / TRAINER_STATE_NAME).write_text('{"global_step": 5}')
    return path


def test_resume_only_from_the_runs_own_checkpoints(tmp_path):
    out = tmp_path / "run"
    elsewhere = _fake_checkpoint(tmp_path / "downloads" / "checkpoint-5")
    with pytest.raises(ValueError, match=r"not a checkpoint-N folder of output_dir .*unpickles") as info:
        tiny(out, resume_from_checkpoint=str(elsewhere))
    assert str(elsewhere) in str(info.value)
    # a `checkpoint-N` symlink in output_dir that points elsewhere is refused too, also as `latest`
    out.mkdir()
    (out / "checkpoint-5").symlink_to(elsewhere)
    for value in ("checkpoint-5", "latest"):
        with pytest.raises(ValueError, match=r"not a checkpoint-N folder of output_dir"):
            resolve_checkpoint(value, out)
    # a nested folder that merely looks like a checkpoint is not one of the run's checkpoints
    nested = _fake_checkpoint(out / "sub" / "checkpoint-5")
    with pytest.raises(ValueError, match=r"not a checkpoint-N folder"):
        resolve_checkpoint(str(nested), out)
    # the run's own checkpoints resolve, by name or path
    (out / "checkpoint-5").unlink()
    own = _fake_checkpoint(out / "checkpoint-5")
    assert resolve_checkpoint("latest", out) == str(own)
    assert resolve_checkpoint("checkpoint-5", out) == str(own)
    assert resolve_checkpoint(str(own), out) == str(own)


# ---- supply chain: the Space installs exact versions ----
def test_space_requirements_are_pinned():
    import re
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    lines = [line.strip() for line in (root / "spaces" / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith(("#", "-"))]
    assert requirements
    for line in requirements:
        vcs = re.fullmatch(r"[\w\-\[\]]+ @ git\+https://\S+\.git@([0-9a-f]{40})", line)
        assert vcs or re.fullmatch(r"[\w\-\[\]]+==[\w.+]+", line), f"not pinned: {line}"
        if vcs and (root / ".git").exists():  # the pinned commit is one of this repository's
            known = subprocess.run(["git", "-C", str(root), "cat-file", "-e", f"{vcs.group(1)}^{{commit}}"])
            assert known.returncode == 0, f"{vcs.group(1)} is not a commit of this repository"

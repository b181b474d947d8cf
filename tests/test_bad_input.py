"""Bad input from every entry point: one table of cases, each asserting the exact error class, that the message names
the bad value, and that no output folder is left behind (or half-written).

CLI cases run in-process through `diffusers_xai.cli.main` (the same path as the console script): once with `--debug`
to see the exception class, once without to see the one-line message and exit code 2. `train/train_ddpm.py` is
loaded as a module and its `main` called the same way; one subprocess run per script checks the real exit code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub.errors import RepositoryNotFoundError

from diffusers_xai import DiffusionXAIPipeline, Trace
from diffusers_xai.cli import main as cli_main
from diffusers_xai.generation import load_pipeline
from diffusers_xai.hub import HubPushError, save_pretrained_with_card
from diffusers_xai.modalities.hf_datasets import NoRowsError
from diffusers_xai.modalities.image.pretrained import load_pretrained_configs
from diffusers_xai.testing import tiny_pipeline, tiny_tabular_pipeline
from tests import hub_fixtures
from tests.repo_scripts import load_script
from tests.test_timeseries_pipeline import tiny_series_pipeline
from tests.test_training import TINY

local_hub = hub_fixtures.local_hub  # registers the fixture in this module

ROOT = Path(__file__).resolve().parents[1]
OUT = "{tmp}/out"  # every case that writes anything writes here: it must not exist after the failure


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved tiny image pipeline, the same with truncated weights, and a tiny training config file."""
    root = tmp_path_factory.mktemp("saved")
    pipe = tiny_pipeline(seed=0)
    pipe.save_pretrained(root / "pipe")
    pipe.save_pretrained(root / "corrupt")
    weights = root / "corrupt" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    (root / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "output_dir": str(root / "unused")}))
    (root / "notes.txt").write_text("not a table")
    (root / "header_only.csv").write_text("a,b\n")
    (root / "broken.yaml").write_text("block_out_channels: [4, 8\n")
    (root / "repeated.yaml").write_text(yaml.safe_dump({**TINY, "output_dir": OUT}) + "learning_rate: 0.5\n")
    (root / "latin1.csv").write_bytes("city,n\nK\u00f6ln,1\n".encode("latin-1"))
    (root / "broken.parquet").write_bytes(b"PAR1")
    (root / "images").mkdir()
    (root / "images" / "a.png").write_text("not a png")
    return root


def _fill(argv, tmp, saved):
    return [a.format(tmp=tmp, saved=saved) for a in argv]


# (id, argv, exception class, text the message must contain)
CLI_CASES = [
    ("train-missing-config", ["train", "--config", "{tmp}/nope.yaml"], ValueError, "nope.yaml"),
    ("train-broken-yaml", ["train", "--config", "{saved}/broken.yaml"], ValueError,
     "broken.yaml' is not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>' (train/"),
    ("train-repeated-key", ["train", "--config", "{saved}/repeated.yaml", "--output_dir", OUT], ValueError,
     "'learning_rate' is set twice (first at line "),
    ("train-typo-key", ["train", "--config", "{saved}/tiny.yaml", "--learning_rat", "1e-4", "--output_dir", OUT],
     ValueError, "Did you mean 'learning_rate'"),
    ("train-zero-steps", ["train", "--config", "{saved}/tiny.yaml", "--max_train_steps", "0", "--output_dir", OUT],
     ValueError, "`max_train_steps` must be >= 1, got 0"),
    ("train-wandb-missing", ["train", "--config", "{saved}/tiny.yaml", "--report_to", "wandb", "--output_dir", OUT],
     ImportError, "pip install wandb"),
    ("train-bad-precision", ["train", "--config", "{saved}/tiny.yaml", "--mixed_precision", "fp17",
     "--output_dir", OUT], ValueError, "'fp17'"),
    ("train-bad-schedule", ["train", "--config", "{saved}/tiny.yaml", "--beta_schedule", "cosin", "--output_dir", OUT],
     ValueError, "Did you mean 'cosine'"),
    ("train-token-flag", ["train", "--config", "{saved}/tiny.yaml", "--hub_token", "hf_x", "--output_dir", OUT],
     ValueError, "`hub_token` is not a training key"),
    ("train-bad-repo-id", ["train", "--config", "{saved}/tiny.yaml", "--push_to_hub", "--hub_model_id", "not a repo",
     "--output_dir", OUT], ValueError, "'not a repo'"),
    ("train-foreign-resume", ["train", "--config", "{saved}/tiny.yaml", "--resume_from_checkpoint", "{saved}/pipe",
     "--output_dir", OUT], ValueError, "pipe' is not a complete checkpoint"),
    ("train-missing-data-dir", ["train", "--config", "{saved}/tiny.yaml", "--dataset_name", "null",
     "--train_data_dir", "{tmp}/no_images", "--output_dir", OUT], ValueError, "no_images"),
    ("train-bad-model-config", ["train", "--config", "{saved}/tiny.yaml", "--model_config_name_or_path",
     "nouser/typo", "--output_dir", OUT], ValueError, "'nouser/typo'"),
    ("generate-missing-pipeline", ["generate", "--pipeline", "{tmp}/nope", "--num_samples", "2", "--out", OUT],
     ValueError, "nope"),
    ("generate-corrupt-weights", ["generate", "--pipeline", "{saved}/corrupt", "--num_samples", "2", "--out", OUT],
     OSError, "diffusion_pytorch_model.safetensors"),
    ("generate-push-without-id", ["generate", "--pipeline", "{saved}/pipe", "--num_samples", "2", "--out", OUT,
     "--push_to_hub"], ValueError, "--hub_dataset_id"),
    ("generate-bad-report-json", ["generate", "--pipeline", "{saved}/pipe", "--num_samples", "2", "--out", OUT,
     "--evaluation_report", "{saved}/notes.txt"], ValueError, "notes.txt"),
    ("generate-more-steps-than-trained", ["generate", "--pipeline", "{saved}/pipe", "--num_samples", "2", "--out", OUT,
     "--num_inference_steps", "5000"], ValueError, "num_train_timesteps (100), got 5000"),
    ("evaluate-missing-samples", ["evaluate", "--samples", "{tmp}/nope.npy", "--data", "digits", "--out",
     OUT + "/r.json"], ValueError, "nope.npy"),
    ("evaluate-unknown-data", ["evaluate", "--samples", "{saved}/notes.txt", "--data", "mnist", "--out",
     OUT + "/r.json"], ValueError, "mnist"),
    ("evaluate-corrupt-weights", ["evaluate", "--pipeline", "{saved}/corrupt", "--data", "digits", "--num_samples",
     "4", "--out", OUT + "/r.json"], OSError, "diffusion_pytorch_model.safetensors"),
    ("evaluate-header-only-table", ["evaluate", "--samples", "{saved}/header_only.csv", "--data", "wine", "--out",
     OUT + "/r.json"], NoRowsError, "header_only.csv' has no rows (a header at most); give a table with at least one"),
    ("evaluate-latin1-table", ["evaluate", "--samples", "{saved}/latin1.csv", "--data", "wine", "--out",
     OUT + "/r.json"], ValueError, "latin1.csv' is not UTF-8 text (invalid start byte: byte b'\\xf6' at position 8)"),
    ("evaluate-broken-parquet", ["evaluate", "--samples", "{saved}/broken.parquet", "--data", "wine", "--out",
     OUT + "/r.json"], ValueError, "broken.parquet' could not be read as Parquet (ArrowInvalid: "),
    ("evaluate-damaged-image", ["evaluate", "--samples", "{saved}/images", "--data", "digits", "--out",
     OUT + "/r.json"], ValueError, "a.png' cannot be read as an image (UnidentifiedImageError)"),
    ("evaluate-out-under-a-file", ["evaluate", "--samples", "{saved}/pipe", "--data", "digits", "--out",
     "{saved}/notes.txt/r.json"], ValueError, "notes.txt' is a file, not a folder; pick another path"),
    ("quickstart-zero-steps", ["quickstart", "--output_dir", OUT, "--max_train_steps", "0"], ValueError,
     "`max_train_steps` must be >= 1, got 0"),
    ("quickstart-zero-samples", ["quickstart", "--output_dir", OUT, "--num_samples", "0"], ValueError,
     "`num_samples` must be an int in [1, 256], got 0"),
    ("push-not-a-pipeline", ["push", "{saved}", "--repo-id", "xai-tester/x"], ValueError, "no model_index.json"),
    ("push-bad-repo-id", ["push", "{saved}/pipe", "--repo-id", "not a repo"], ValueError, "'not a repo'"),
    ("push-missing-card-json", ["push", "{saved}/pipe", "--repo-id", "xai-tester/x", "--card-json",
     "{tmp}/card.json"], ValueError, "card.json"),
    ("push-empty-figures-dir", ["push", "{saved}/pipe", "--repo-id", "xai-tester/x", "--figures-dir", "{tmp}"],
     ValueError, "contains no .png files"),
]  # fmt: skip


def _assert_one_line(err: str, needle: str, prog: str) -> None:
    """One error line naming `needle` (progress bars may share stderr), and no traceback."""
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and needle in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(("argv", "error", "needle"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(argv, error, needle, saved, tmp_path, capsys, monkeypatch):
    hub_fixtures.point_hf_at(None, "hf_fake" if argv[0] == "push" else None, tmp_path / "cache", monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = _fill(argv, tmp_path, saved)
    with pytest.raises(error) as info:
        cli_main(["--debug", *argv])
    assert type(info.value) is error or error is OSError and isinstance(info.value, OSError)
    assert needle in str(info.value)
    capsys.readouterr()
    assert cli_main(argv) == 2
    _assert_one_line(capsys.readouterr().err, needle, f"diffusers-xai {argv[0]}")
    assert not (tmp_path / "out").exists()


# ---- Hub and network errors through the CLI (the local Hub server stands in for the Hub) ----
def test_cli_typo_hub_id_is_one_line(local_hub, tmp_path, capsys):
    argv = ["generate", "--pipeline", "xai-tester/no-such-model", "--num_samples", "2", "--out", str(tmp_path / "o")]
    with pytest.raises(OSError, match="xai-tester/no-such-model") as info:
        cli_main(["--debug", *argv])
    assert isinstance(info.value.__cause__ or info.value.__context__, RepositoryNotFoundError) or isinstance(
        info.value, RepositoryNotFoundError
    )
    assert cli_main(argv) == 2
    _assert_one_line(capsys.readouterr().err, "xai-tester/no-such-model", "diffusers-xai generate")
    assert not (tmp_path / "o").exists()


def test_cli_no_network_is_one_line(tmp_path, capsys, monkeypatch):
    hub_fixtures.point_hf_at("http://127.0.0.1:9", "hf_fake", tmp_path / "cache", monkeypatch)  # nothing listens
    argv = ["generate", "--pipeline", "someone/model", "--num_samples", "2", "--out", str(tmp_path / "o")]
    assert cli_main(argv) == 2
    _assert_one_line(capsys.readouterr().err, "someone/model", "diffusers-xai generate")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("load", "what"),
    [
        (load_pipeline, "it could neither"),
        (load_pretrained_configs, "its unet/ config could neither"),
    ],
    ids=["pipeline", "pretrained-unet"],
)
def test_a_hub_id_neither_here_nor_reachable_is_one_line(load, what):
    """Offline (as every test runs), a Hub id that is not cached. `generate`/`evaluate --pipeline` printed
    huggingface_hub's paragraph inside their own message, twice wrapped; fine-tuning's `pretrained_model_name_or_path`
    was refused as a repo without config.json (diffusers' wording of a `LocalEntryNotFoundError`)."""
    from diffusers_xai.errors import user_error_message

    with pytest.raises(ConnectionError) as caught:
        load("someone/not-a-pipeline")
    assert user_error_message(caught.value) == (
        "Could not reach the Hugging Face Hub (ConnectionError: 'someone/not-a-pipeline' is not a local folder, and "
        f"{what} be downloaded from the Hub nor found in its cache (LocalEntryNotFoundError)). Check the network (or "
        "HF_ENDPOINT), or pass a local folder and set HF_HUB_OFFLINE=1."
    )


def test_cli_failed_push_is_one_line(local_hub, saved, tmp_path, capsys):
    folder = save_pretrained_with_card(tiny_pipeline(seed=1), tmp_path / "folder")
    local_hub.inject("POST", r"/commit/", status=500)
    with pytest.raises(HubPushError, match="xai-tester/pushed"):
        cli_main(["--debug", "push", str(folder), "--repo-id", "xai-tester/pushed"])
    local_hub.inject("POST", r"/commit/", status=500)
    assert cli_main(["push", str(folder), "--repo-id", "xai-tester/pushed"]) == 2
    _assert_one_line(capsys.readouterr().err, "to 'xai-tester/pushed'", "diffusers-xai push")


def test_debug_env_shows_the_traceback(saved, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFUSERS_XAI_DEBUG", "1")
    with pytest.raises(ValueError, match="nope.yaml"):
        cli_main(["train", "--config", str(tmp_path / "nope.yaml")])


# ---- train/train_ddpm.py ----
def _train_ddpm():
    return load_script("train/train_ddpm.py")


SCRIPT_CASES = [
    ("missing-config", ["--config", "{tmp}/nope.yaml"], ValueError, "nope.yaml"),
    ("typo-key", ["--config", "{saved}/tiny.yaml", "--num_epoch", "3", "--output_dir", OUT], ValueError,
     "Did you mean 'num_epochs'"),
    ("zero-steps", ["--config", "{saved}/tiny.yaml", "--max_train_steps", "0", "--output_dir", OUT], ValueError,
     "`max_train_steps` must be >= 1, got 0"),
    ("wandb-missing", ["--config", "{saved}/tiny.yaml", "--report_to", "wandb", "--output_dir", OUT], ImportError,
     "pip install wandb"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "error", "needle"), [c[1:] for c in SCRIPT_CASES], ids=[c[0] for c in SCRIPT_CASES])
def test_train_ddpm_bad_input(argv, error, needle, saved, tmp_path, capsys):
    script = _train_ddpm()
    argv = _fill(argv, tmp_path, saved)
    with pytest.raises(error, match=needle.replace("(", r"\(").replace("[", r"\[")):
        script.main(script.parse_args([*argv, "--debug"]))
    assert script.main(script.parse_args(argv)) == 2
    _assert_one_line(capsys.readouterr().err, needle, "train_ddpm.py")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("files", "error", "needle"),
    [
        ({}, FileNotFoundError, "doesn't contain any data files: put the images (or a CSV, Parquet or JSON table)"),
        (
            {"a.png": None, "b.png": b"not a png"},
            ValueError,
            "b.png' (row 1 of column 'image') cannot be read as an image (UnidentifiedImageError): it is damaged",
        ),
    ],
    ids=["empty-folder", "damaged-image"],
)
def test_train_ddpm_image_folder_bad_input(files, error, needle, saved, tmp_path, capsys):
    """A damaged image stopped the run at the batch that decoded it, after the run folder and its logs were written;
    now it is named before training, and a refused run leaves no folder behind."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for name, content in files.items():
        if content is None:
            Image.new("L", (8, 8)).save(folder / name)
        else:
            (folder / name).write_bytes(content)
    script = _train_ddpm()
    argv = ["--config", str(saved / "tiny.yaml"), "--dataset_name", str(folder), "--output_dir", str(tmp_path / "out")]
    with pytest.raises(error):
        script.main(script.parse_args([*argv, "--debug"]))
    assert not (tmp_path / "out").exists()
    assert script.main(script.parse_args(argv)) == 2
    _assert_one_line(capsys.readouterr().err, needle, "train_ddpm.py")
    assert not (tmp_path / "out").exists()


def test_train_ddpm_non_finite_loss_is_one_line(saved, tmp_path, capsys, monkeypatch):
    from diffusers_xai.training import trainer

    monkeypatch.setattr(trainer, "diffusion_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    script = _train_ddpm()
    argv = ["--config", str(saved / "tiny.yaml"), "--output_dir", str(tmp_path / "run"), "--max_train_steps", "2"]
    assert script.main(script.parse_args(argv)) == 2
    _assert_one_line(capsys.readouterr().err, "Training loss became nan at step 1", "train_ddpm.py")
    assert not (tmp_path / "run" / "model_index.json").exists()


@pytest.mark.slow
def test_train_ddpm_subprocess_exit_code_and_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "train" / "train_ddpm.py"), "--config", str(tmp_path / "nope.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    _assert_one_line(proc.stderr, "nope.yaml", "train_ddpm.py")
    assert "Traceback" not in proc.stderr


# ---- pipelines: from_pretrained and __call__ ----
@pytest.fixture(scope="module")
def pipes():
    image = tiny_pipeline(seed=0)
    image.set_progress_bar_config(disable=True)
    return {"image": image, "table": tiny_tabular_pipeline()[0], "series": tiny_series_pipeline()}


def _call(kind, **kw):
    size = {"image": "batch_size", "table": "num_rows", "series": "num_series"}[kind]
    args = {size: 2, "num_inference_steps": 2, **{(size if k == "n" else k): v for k, v in kw.items()}}
    return lambda p: p[kind](**args)


CALL_CASES = [
    ("image-zero-batch", _call("image", n=0), ValueError, "got 0"),
    ("image-zero-steps", _call("image", num_inference_steps=0), ValueError, "got 0"),
    ("image-too-many-steps", _call("image", num_inference_steps=10**6), ValueError, "1000000"),
    ("image-eta-above-one", _call("image", eta=2.5), ValueError, "got 2.5"),
    ("image-eta-string", _call("image", eta="big"), ValueError, "'big'"),
    ("image-generators", _call("image", generator=[torch.Generator()]), ValueError, "length 1"),
    ("table-negative-rows", _call("table", n=-3), ValueError, "got -3"),
    ("table-eta-negative", _call("table", eta=-0.5), ValueError, "got -0.5"),
    ("series-zero-series", _call("series", n=0), ValueError, "got 0"),
    ("series-float-steps", _call("series", num_inference_steps=2.5), ValueError, "got 2.5"),
    ("series-eta-nan", _call("series", eta=float("nan")), ValueError, "got nan"),
]


@pytest.mark.parametrize(("call", "error", "needle"), [c[1:] for c in CALL_CASES], ids=[c[0] for c in CALL_CASES])
def test_pipeline_call_bad_input(call, error, needle, pipes):
    with pytest.raises(error) as info:
        call(pipes)
    assert type(info.value) is error and needle in str(info.value)


@pytest.mark.parametrize(
    ("load", "error", "needle"),
    [
        (lambda s: DiffusionXAIPipeline.from_pretrained(str(s / "corrupt")), OSError, "safetensors"),
        (lambda s: DiffusionXAIPipeline.from_pretrained(str(s / "missing")), ValueError, "missing"),
        (lambda s: _tabular().from_pretrained(str(s / "pipe")), ValueError, "denoiser"),
        (lambda s: _series().from_pretrained(str(s / "pipe")), ValueError, "preprocessor"),
    ],
    ids=["image-corrupt", "image-missing", "tabular-from-image-folder", "series-from-image-folder"],
)
def test_from_pretrained_bad_input(load, error, needle, saved):
    with pytest.raises(error) as info:
        load(saved)
    assert isinstance(info.value, error) and needle in str(info.value)


def _tabular():
    from diffusers_xai import TabularXAIPipeline

    return TabularXAIPipeline


def _series():
    from diffusers_xai import TimeSeriesXAIPipeline

    return TimeSeriesXAIPipeline


# ---- traces, explain_generation, evaluation ----
def test_trace_load_bad_files(saved, tmp_path):
    weights = saved / "pipe" / "unet" / "diffusion_pytorch_model.safetensors"
    with pytest.raises(ValueError, match="is a safetensors file but not a diffusers-xai trace") as info:
        Trace.load(weights)
    assert str(weights) in str(info.value)
    with pytest.raises(ValueError, match="nope.safetensors.* does not exist"):
        Trace.load(tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="notes.txt.* is not a safetensors file"):
        Trace.load(saved / "notes.txt")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [({"methods": ["gradkam"]}, "'gradkam'"), ({"sample_index": 7}, "7")],
    ids=["unknown-method", "sample-index"],
)
def test_explain_generation_bad_input(kwargs, needle, pipes, tmp_path):
    from diffusers_xai import TraceConfig, explain_generation

    out = pipes["image"](
        batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), trace=TraceConfig(),
        output_type="pt",
    )  # fmt: skip
    with pytest.raises(ValueError) as info:
        explain_generation(pipes["image"], out, tmp_path / "out", faithfulness=False, sanity_check=False, **kwargs)
    assert needle in str(info.value)
    assert not (tmp_path / "out").exists()


EVAL_CASES = [
    ("fid-one-sample", lambda e: e.frechet_distance(np.zeros((1, 4)), np.zeros((5, 4))), "got 1 real"),
    ("fid-dims", lambda e: e.frechet_distance(np.zeros((5, 4)), np.zeros((5, 3))), "(5, 3)"),
    ("fid-nan", lambda e: e.frechet_distance(np.full((5, 4), np.nan), np.zeros((5, 4))), "NaN"),
    ("prdc-k", lambda e: e.compute_prdc(np.random.rand(4, 2), np.random.rand(4, 2), nearest_k=5), "nearest_k=5"),
    ("fid-1d", lambda e: e.frechet_distance(np.zeros(5), np.zeros((5, 4))), "shape (5,)"),
]


@pytest.mark.parametrize(("call", "needle"), [c[1:] for c in EVAL_CASES], ids=[c[0] for c in EVAL_CASES])
def test_evaluation_bad_input(call, needle):
    import diffusers_xai.evaluation as evaluation

    with pytest.raises(ValueError) as info:
        call(evaluation)
    assert needle in str(info.value)


# ---- the Space's handlers, through gradio_client ----
@pytest.fixture(scope="module")
def space_client(tmp_path_factory):
    pytest.importorskip("gradio")
    gradio_client = pytest.importorskip("gradio_client")
    from tests.space_fixtures import load_space_app, serve_space_app

    app = load_space_app("space_app_bad_input", tmp_path_factory.mktemp("space_outputs"))
    with serve_space_app(app) as (_, url):
        yield app, gradio_client.Client(url, verbose=False)


SPACE_CASES = [  # (id, model or None for the bundled one, scheduler, steps, seed, batch, text of the error)
    ("unlisted-hub-id", "someone/model", "ddim", 5, 0, 1, "Model 'someone/model' is not available on this Space"),
    ("server-path", "/etc/passwd", "ddim", 5, 0, 1, "Model '<path>' is not available on this Space"),
    ("over-budget", None, "ddpm", 1000, 0, 16, "Steps x Batch size = 1000 x 16 = 16000"),
    ("steps-above-T", None, "ddim", 1001, 0, 1, "1001"),
    ("batch-17", None, "ddim", 5, 0, 17, "17"),
    ("scheduler", None, "euler", 5, 0, 1, "'euler'"),
]


@pytest.mark.parametrize(("model", "scheduler", "steps", "seed", "batch", "needle"), [c[1:] for c in SPACE_CASES],
                         ids=[c[0] for c in SPACE_CASES])  # fmt: skip
def test_space_generate_bad_input(space_client, model, scheduler, steps, seed, batch, needle):
    from gradio_client.exceptions import AppError

    app, client = space_client
    before = sorted(app.common.OUTPUT_DIR.iterdir()) if app.common.OUTPUT_DIR.exists() else []
    with pytest.raises(AppError) as info:
        client.predict(model or app.images.BUNDLED_LABEL, scheduler, steps, seed, batch, api_name="/generate")
    assert needle in str(info.value)
    after = sorted(app.common.OUTPUT_DIR.iterdir()) if app.common.OUTPUT_DIR.exists() else []
    assert after == before  # nothing written for a refused request


def test_a_folder_loaded_with_another_modalitys_pipeline_class_names_the_class(tmp_path):
    """diffusers' own error was "Pipeline <class 'DiffusionXAIPipeline'> expected ['scheduler', 'unet'], but only
    {'scheduler'} were passed", after two warnings about unexpected config attributes; a table loaded as a series
    failed on the preprocessor's type."""
    from diffusers_xai import TabularXAIPipeline, TimeSeriesXAIPipeline

    tiny_tabular_pipeline()[0].save_pretrained(tmp_path / "table")
    tiny_pipeline(seed=0).save_pretrained(tmp_path / "images")
    with pytest.raises(ValueError) as images:
        DiffusionXAIPipeline.from_pretrained(tmp_path / "table")
    assert str(images.value) == (
        f"{str(tmp_path / 'table')!r} holds a TabularXAIPipeline, which DiffusionXAIPipeline cannot load (it needs "
        "['scheduler', 'unet'], the folder has ['denoiser', 'preprocessor', 'scheduler']): load it with "
        "TabularXAIPipeline.from_pretrained."
    )
    with pytest.raises(
        ValueError,
        match=r"holds a TabularXAIPipeline, which TimeSeriesXAIPipeline cannot load "
        r"\(another modality's pipeline\): load it with TabularXAIPipeline\.from_pretrained\.$",
    ):
        TimeSeriesXAIPipeline.from_pretrained(tmp_path / "table")
    with pytest.raises(ValueError, match=r"holds a DiffusionXAIPipeline, which TabularXAIPipeline cannot load"):
        TabularXAIPipeline.from_pretrained(str(tmp_path / "images"))
    # the right class, and a component passed in place of a saved one, still load
    assert type(TabularXAIPipeline.from_pretrained(tmp_path / "table")) is TabularXAIPipeline
    unet = DiffusionXAIPipeline.from_pretrained(tmp_path / "images").unet
    assert DiffusionXAIPipeline.from_pretrained(tmp_path / "images", unet=unet).unet is unet

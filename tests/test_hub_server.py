"""The local Hub server answers the real huggingface_hub / datasets code paths (real sockets, no mocks)."""

import os

import httpx2
import pytest
from huggingface_hub import (
    HfApi,
    HfFileSystem,
    ModelCard,
    create_repo,
    hf_hub_download,
    list_repo_tree,
    model_info,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests import hub_fixtures
from tests.hub_server import LocalHubServer, git_blob_sha1, validate_card_metadata

local_hub = hub_fixtures.local_hub  # registers the fixture in this module


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "folder"
    (root / "weights").mkdir(parents=True)
    (root / "README.md").write_text("---\nlicense: mit\ntags: [a, b]\n---\n# Demo\n")
    (root / "config.json").write_text('{"x": 1}')
    (root / "weights" / "model.safetensors").write_bytes(os.urandom(3000))
    return root


def test_upload_download_roundtrip(local_hub, folder, tmp_path):
    repo = create_repo("xai-tester/demo")
    assert repo.repo_id == "xai-tester/demo" and repo.startswith(local_hub.endpoint)
    info = HfApi().upload_folder(repo_id="xai-tester/demo", folder_path=folder, commit_message="add files")
    assert info.oid == local_hub.head("xai-tester/demo")

    listed = model_info("xai-tester/demo")
    assert listed.sha == info.oid
    assert listed.card_data.license == "mit" and listed.tags == ["a", "b"]
    siblings = {s.rfilename: s for s in listed.siblings}
    assert set(siblings) == {".gitattributes", "README.md", "config.json", "weights/model.safetensors"}
    # binary files take the LFS path (preupload -> LFS batch -> PUT -> verify -> lfsFile in the commit)
    assert siblings["weights/model.safetensors"].lfs.size == 3000
    assert siblings["config.json"].lfs is None
    assert siblings["config.json"].blob_id == git_blob_sha1(b'{"x": 1}')
    paths = [r[1].split("?")[0] for r in local_hub.requests]
    assert "/xai-tester/demo.git/info/lfs/objects/batch" in paths

    weights = hf_hub_download("xai-tester/demo", "weights/model.safetensors")
    assert open(weights, "rb").read() == (folder / "weights" / "model.safetensors").read_bytes()
    snapshot = snapshot_download("xai-tester/demo")
    assert open(os.path.join(snapshot, "config.json")).read() == '{"x": 1}'

    top = {f.path for f in list_repo_tree("xai-tester/demo")}
    assert top == {".gitattributes", "README.md", "config.json", "weights"}
    every = {f.path for f in list_repo_tree("xai-tester/demo", recursive=True)}
    assert "weights/model.safetensors" in every
    infos = HfApi().get_paths_info("xai-tester/demo", ["config.json", "weights", "missing.txt"])
    assert [i.path for i in infos] == ["config.json", "weights"]

    with HfFileSystem().open("xai-tester/demo/weights/model.safetensors", "rb") as f:  # ranged reads
        f.seek(1000)
        assert f.read(10) == (folder / "weights" / "model.safetensors").read_bytes()[1000:1010]

    # unchanged files are skipped by the client (it compares the preupload oid with its own)
    again = HfApi().upload_folder(repo_id="xai-tester/demo", folder_path=folder, commit_message="same files")
    assert again.oid == info.oid


def test_errors_map_to_hub_exceptions(local_hub, folder):
    with pytest.raises(RepositoryNotFoundError):
        model_info("xai-tester/nope")
    create_repo("xai-tester/demo")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("xai-tester/demo", "README.md", revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("xai-tester/demo", "missing.txt")
    with pytest.raises(HfHubHTTPError, match="401"):
        HfApi(token="hf_wrongToken").create_repo("xai-tester/other")

    create_repo("xai-tester/secret", private=True)
    assert local_hub.is_private("xai-tester/secret")
    assert model_info("xai-tester/secret").private is True
    with pytest.raises(RepositoryNotFoundError):  # same answer as a missing repo, like the Hub
        model_info("xai-tester/secret", token=False)


def test_validate_yaml_endpoint(local_hub):
    ModelCard("---\nlicense: mit\nlibrary_name: diffusers\n---\n# ok\n").validate()
    with pytest.raises(ValueError, match='"library_name" must be a string'):
        ModelCard("---\nlicense: mit\nlibrary_name: [a, b]\n---\n# bad\n").validate()
    # the commit endpoint refuses invalid card metadata too
    create_repo("xai-tester/demo")
    with pytest.raises(ValueError, match="Invalid metadata"):
        HfApi().upload_file(
            path_or_fileobj=b"---\nlicense: [1]\n---\n", path_in_repo="README.md", repo_id="xai-tester/demo"
        )


@pytest.mark.parametrize(
    "content, errors",
    [
        ("---\nlicense: mit\n---\n", []),
        ("---\nmodel-index: {}\n---\n", ['"model-index" must be an array']),
        (
            "---\nmodel-index:\n- name: m\n  results:\n  - task: {type: t}\n"
            "    dataset: {name: d}\n    metrics: []\n---\n",
            [
                '"model-index[0].results[0].dataset" needs string "name" and "type"',
                '"model-index[0].results[0].metrics" must be a non-empty array',
            ],
        ),
        ("---\ntags: [1, 2]\n---\n", ['"tags" must be a string or an array of strings']),
        ("---\n- a list\n---\n", ["The YAML metadata must be a mapping"]),
    ],
)
def test_validate_card_metadata(content, errors):
    assert validate_card_metadata(content)[0] == errors


def test_injected_delay_and_lifecycle(tmp_path):
    with pytest.raises(RuntimeError, match="not running"):
        _ = LocalHubServer(tmp_path).endpoint
    with LocalHubServer(tmp_path) as hub:
        with pytest.raises(ValueError, match="needs a `status`"):
            hub.inject("GET", "/", status=None)
        hub.inject("GET", r"/api/whoami-v2", delay=5.0)
        with pytest.raises(httpx2.ReadTimeout):
            httpx2.get(f"{hub.endpoint}/api/whoami-v2", timeout=0.3)
        response = httpx2.get(f"{hub.endpoint}/api/whoami-v2", headers={"authorization": f"Bearer {hub.token}"})
        assert response.json()["name"] == hub.user


def test_datasets_push_and_load(local_hub):
    datasets = pytest.importorskip("datasets")
    from huggingface_hub import DatasetCard, DatasetCardData

    ds = datasets.Dataset.from_dict({"x": [1.5, 2.5, 3.5], "label": [0, 1, 0]})
    ds.push_to_hub("xai-tester/synthetic")
    card = DatasetCard.from_template(
        DatasetCardData(license="mit", tags=["synthetic-data"]),
        template_str="---\n{{ card_data }}\n---\n# synthetic\n",
    )
    card.push_to_hub("xai-tester/synthetic")
    files = local_hub.list_files("xai-tester/synthetic", repo_type="dataset")
    assert "data/train-00000-of-00001.parquet" in files and "README.md" in files

    back = datasets.load_dataset("xai-tester/synthetic", split="train")
    assert back.to_dict() == {"x": [1.5, 2.5, 3.5], "label": [0, 1, 0]}
    assert DatasetCard.load("xai-tester/synthetic").data.tags == ["synthetic-data"]

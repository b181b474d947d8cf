"""The example notebooks: stored without outputs, and executed top to bottom (slow run) so they never rot."""

import os
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
NOTEBOOKS = ["01_getting_started.ipynb", "02_training_custom_model.ipynb", "03_explainability_demo.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_valid_and_stored_without_outputs(name):
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, name
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: strip outputs before committing"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # the kernel inherits this environment: outputs in tmp_path, this checkout on the path, quiet shared cores
    monkeypatch.setenv("DXAI_EXAMPLES_OUT", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    resources = {"metadata": {"path": str(EXAMPLES)}}  # the kernel's working directory
    client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources=resources)
    client.execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    written = {p.name for p in (tmp_path / name.removesuffix(".ipynb")).rglob("*.png")}
    assert written, f"{name} wrote no figure"

"""The package's lazy top level: `import diffusers_xai` is cheap, every exported name resolves, and saved pipelines
load in a fresh process that imported nothing else (diffusers needs the component modules already imported)."""

import os
import subprocess
import sys

import diffusers_xai

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FRESH = """
import sys
import diffusers_xai
assert "torch" not in sys.modules and "diffusers" not in sys.modules, "import diffusers_xai must stay lazy"
from diffusers_xai import TabularXAIPipeline, TimeSeriesXAIPipeline
assert "captum" not in sys.modules and "shap" not in sys.modules, "a pipeline import must not pull in explainers"
table = TabularXAIPipeline.from_pretrained("spaces/wine-tabddpm")
series = TimeSeriesXAIPipeline.from_pretrained("spaces/sines-timeseries")
print(type(table.denoiser).__name__, type(series.denoiser).__name__)
"""


def test_every_exported_name_resolves():
    missing = [name for name in diffusers_xai.__all__ if getattr(diffusers_xai, name, None) is None]
    assert missing == []
    assert set(diffusers_xai.__all__) <= set(dir(diffusers_xai))


def test_fresh_process_loads_saved_pipelines_from_the_lazy_top_level():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-c", FRESH], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["TabularDenoiser", "TimeSeriesDenoiser"]


def test_a_preprocessors_old_module_forwards_only_the_names_its_new_module_has():
    import pytest

    from diffusers_xai.modalities.tabular import data, preprocessor

    assert data.TabularPreprocessor is preprocessor.TabularPreprocessor  # what a model_index.json naming data.py needs
    assert data.ModelMixin is preprocessor.ModelMixin  # diffusers checks the class against the module's base classes
    with pytest.raises(AttributeError, match=r"^module 'diffusers_xai.modalities.tabular.data' has no attribute 'x'$"):
        data.x  # noqa: B018

"""The generation manifest: which model and which settings produced the shards of an output directory.

A rerun into the same directory resumes only if the model fingerprint and the generation settings match; anything
else would silently mix samples of two models (or two settings) in one dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..utils.io import atomic_write

__all__ = ["MANIFEST_NAME", "GenerationManifest", "config_dict", "model_fingerprint"]

MANIFEST_NAME = "generation_manifest.json"
# settings kept as the user spelled them (the card's reproduce command repeats them) but compared through what they
# resolve to: the class labels `[0, 1]` from the library and `["0", "b"]` from the command line are the same classes
CANONICAL_SETTINGS = {"class_labels": "class_indices"}

FORMAT_VERSION = 1
# Config keys that describe where/with what a model was saved, not what it computes.
_VOLATILE_CONFIG_KEYS = {"_name_or_path", "_diffusers_version", "_use_default_values", "_commit_hash"}


def config_dict(config) -> dict:
    """A component config without the keys that only say where and with which version it was saved."""
    return {k: v for k, v in dict(config).items() if k not in _VOLATILE_CONFIG_KEYS}


def model_fingerprint(pipeline) -> str:
    """
    `"sha256:<hex>"` over the pipeline class, every component's config and every module's weights (state dict).

    Schedulers are left out: they are a sampling setting (recorded in the manifest's `settings`), not the model.
    Moving or re-saving a model keeps the fingerprint; retraining or another checkpoint changes it. Hashing reads
    every weight once (about a second per GB).
    """
    digest = hashlib.sha256()
    digest.update(type(pipeline).__name__.encode())
    for name in sorted(pipeline.components):
        component = pipeline.components[name]
        if isinstance(component, SchedulerMixin):
            continue
        digest.update(f"\0component:{name}:{type(component).__name__}".encode())
        config = getattr(component, "config", None)
        if config is not None:
            payload = json.dumps(config_dict(config), sort_keys=True, default=str)
            digest.update(payload.encode())
        if isinstance(component, torch.nn.Module):
            for key, tensor in sorted(component.state_dict().items()):
                tensor = tensor.detach().to("cpu").contiguous()
                digest.update(f"\0{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
                digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


@dataclass
class GenerationManifest:
    r"""
    What [`generate_dataset`] writes to `generation_manifest.json` before the first shard.

    Args:
        model_fingerprint (`str`): [`model_fingerprint`] of the pipeline.
        pipeline_class (`str`): its class name.
        source_model (`str`, *optional*): the directory or Hub repo id it was loaded from.
        model_revision (`str`, *optional*): the Hub commit it was loaded at, when known.
        settings (`dict`): generation settings that determine the samples (num_samples, shard_size, batch_size,
            base_seed, num_inference_steps, scheduler, eta, summaries...).
        num_shards (`int`): number of shards of the complete dataset.
        modality (`str`): the [`Modality`] name: `"image"`, `"tabular"` or `"timeseries"`.
    """

    model_fingerprint: str
    pipeline_class: str
    settings: dict
    num_shards: int
    modality: str
    source_model: str | None = None
    model_revision: str | None = None
    library_version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def model_id(self) -> str:
        """What the per-sample `model_revision` column holds: the Hub revision, else the fingerprint."""
        return self.model_revision or self.model_fingerprint

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the manifest atomically (temp file in the same directory, then `os.replace`)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return atomic_write(directory / MANIFEST_NAME, self.to_json(), fsync=True)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> GenerationManifest | None:
        """The manifest in `directory`, or `None` if there is none."""
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(
                f"{path} is not a diffusers-xai generation manifest ({err}); use an empty output directory."
            ) from err

    def check_compatible(self, other: GenerationManifest, directory: str | os.PathLike) -> None:
        """Raise `ValueError` unless `other` (the existing manifest of `directory`) describes the same dataset."""
        if other.model_fingerprint != self.model_fingerprint or other.pipeline_class != self.pipeline_class:
            raise ValueError(
                f"{directory} holds a dataset generated by a different model ({other.pipeline_class} "
                f"{other.model_fingerprint[:19]}…, from {other.source_model!r}) than the one given "
                f"({self.pipeline_class} {self.model_fingerprint[:19]}…, from {self.source_model!r}). Choose a new "
                "--out directory, or delete the old one to regenerate."
            )
        changed = {
            k: (other.settings.get(k), self.settings.get(k))
            for k in sorted((set(self.settings) | set(other.settings)) - set(CANONICAL_SETTINGS.values()))
            if _differ(k, other.settings, self.settings)
        }
        if changed:
            detail = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ValueError(
                f"{directory} holds a dataset generated with different settings ({detail}). Resume with the "
                "original settings, or choose a new --out directory."
            )


def _differ(key: str, old: dict, new: dict) -> bool:
    """Whether setting `key` differs between two manifests' settings, through its canonical form where it has one."""
    canonical = CANONICAL_SETTINGS.get(key)
    if canonical is not None and old.get(canonical) is not None:
        return old.get(canonical) != new.get(canonical)
    return old.get(key) != new.get(key)

"""Synthetic-dataset generation at scale: sharded, resumable, deterministic Parquet datasets, pushed to the Hub."""

from .card import dataset_card, push_dataset_to_hub, save_dataset_card, size_category
from .given_values import sample_given_values
from .loading import load_generated_samples, load_pipeline
from .manifest import MANIFEST_NAME, GenerationManifest, model_fingerprint
from .samples import SampleBatch, sample_modality
from .sharded import GenerationResult, distributed_state, generate_dataset, shard_path
from .summaries import attention_entropy, explanation_summaries, sample_commit_steps, summary_trace_config

__all__ = [
    "MANIFEST_NAME",
    "GenerationManifest",
    "GenerationResult",
    "SampleBatch",
    "attention_entropy",
    "dataset_card",
    "distributed_state",
    "explanation_summaries",
    "generate_dataset",
    "load_generated_samples",
    "load_pipeline",
    "model_fingerprint",
    "push_dataset_to_hub",
    "sample_commit_steps",
    "sample_given_values",
    "sample_modality",
    "save_dataset_card",
    "shard_path",
    "size_category",
    "summary_trace_config",
]

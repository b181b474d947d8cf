"""Publishing: explanation cards (our Jinja template → `huggingface_hub.ModelCard`) and pushing to the Hub."""

from .card import (
    SUMMARY_PATH,
    ExplanationCardData,
    explanation_card,
    load_explanation_card_data,
    save_explanation_card,
)
from .publish import COMMUNITY_PIPELINES, HubPushError, community_pipeline_file, publish, save_pretrained_with_card
from .summary import summarize_pipeline

__all__ = [
    "COMMUNITY_PIPELINES",
    "SUMMARY_PATH",
    "ExplanationCardData",
    "HubPushError",
    "community_pipeline_file",
    "explanation_card",
    "load_explanation_card_data",
    "publish",
    "save_explanation_card",
    "save_pretrained_with_card",
    "summarize_pipeline",
]

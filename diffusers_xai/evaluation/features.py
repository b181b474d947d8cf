"""Feature extractors for image metrics: the shipped digits-CNN (offline default), InceptionV3 (optional), or yours."""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from tqdm.auto import tqdm

__all__ = [
    "DIGITS_CNN_DIR",
    "DigitsCNN",
    "FeatureSet",
    "InceptionFeatureExtractor",
    "extract_features",
    "feature_space_name",
    "is_torch_fidelity_available",
    "resolve_feature_extractor",
]

logger = logging.getLogger(__name__)

DIGITS_CNN_DIR = os.path.join(os.path.dirname(__file__), "digits_cnn")


def is_torch_fidelity_available() -> bool:
    return importlib.util.find_spec("torch_fidelity") is not None


class DigitsCNN(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="diffusers_xai",
    tags=["diffusers-xai", "feature-extractor", "fid"],
    repo_url="https://github.com/diffusers-xai/diffusers-xai",
):
    r"""
    A small CNN classifier of scikit-learn's handwritten digits (8x8 upscaled to 16x16, as
    `diffusers_xai.modalities.image.load_digits_tensors`), used as the offline feature space for FID/KID/PRDC and its
    logits for the Inception Score. The shipped weights (`DIGITS_CNN_DIR`, ~190 KB of safetensors) are reproduced bit
    for bit on the same torch build by `python -m diffusers_xai.evaluation.train_digits_features`.

    Metrics in this space are NOT comparable with Inception-based numbers from papers; every report names them
    "FID (digits-CNN features)" and so on.

    Input: `[N, C, H, W]` floats in [0, 1]; RGB is turned into luminance and other sizes are resized (bilinear,
    antialiased) to `resolution`. `forward` returns the `[N, num_features]` penultimate-layer (pre-ReLU) features
    divided by `feature_scale`, their RMS over the training digits (fixed at training time), so that features are
    O(1) per dimension like InceptionV3's and KID's polynomial kernel $(x^\top y / D + 1)^3$ stays in its intended
    range; [`~DigitsCNN.logits`] returns the `[N, num_classes]` class logits.
    """

    feature_space_name = "digits-CNN"

    def __init__(self, resolution: int = 16, num_classes: int = 10, width: int = 16, num_features: int = 64):
        super().__init__()
        self.resolution = resolution
        self.num_features = num_features
        self.conv = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        flat = 2 * width * ((resolution + 3) // 4) ** 2
        self.fc = nn.Linear(flat, num_features)
        self.head = nn.Linear(num_features, num_classes)
        self.register_buffer("feature_scale", torch.ones(()))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 3:
            x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).contiguous()
        elif x.shape[1] != 1:
            raise ValueError(f"DigitsCNN takes 1- or 3-channel images, got shape {tuple(x.shape)}.")
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True)
        return x * 2 - 1  # the digits' model space, [-1, 1]

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """Unscaled pre-ReLU penultimate activations `[N, num_features]`."""
        return self.fc(self.conv(self.preprocess(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.penultimate(x) / self.feature_scale

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.penultimate(x)))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.penultimate(x)
        return h / self.feature_scale, self.head(F.relu(h))

    @classmethod
    def from_shipped(cls) -> DigitsCNN:
        """The weights shipped with the package (no download)."""
        if not os.path.isfile(os.path.join(DIGITS_CNN_DIR, "model.safetensors")):
            raise FileNotFoundError(
                f"The digits-CNN weights are missing from {DIGITS_CNN_DIR}; reinstall diffusers-xai or run "
                "`python -m diffusers_xai.evaluation.train_digits_features`."
            )
        # `from_pretrained(DIGITS_CNN_DIR)` works too; loading directly skips the Hub machinery for a local folder
        import json

        from safetensors.torch import load_model

        with open(os.path.join(DIGITS_CNN_DIR, "config.json"), encoding="utf-8") as f:
            model = cls(**json.load(f))
        load_model(model, os.path.join(DIGITS_CNN_DIR, "model.safetensors"), strict=True)
        return model.eval()


class InceptionFeatureExtractor(nn.Module):
    r"""
    torchmetrics' FID InceptionV3 (`NoTrainInceptionV3`, the TF-ported weights of Heusel et al. 2017 through
    torch-fidelity): 2048-D pool3 features and the 1008-way unbiased logits for the Inception Score. Needs
    `pip install torch-fidelity` and a one-time weight download, so it is never the offline default.

    Input: `[N, C, H, W]` floats in [0, 1]; grayscale is repeated to 3 channels and images are quantised to uint8, as
    torch-fidelity expects.
    """

    feature_space_name = "InceptionV3"

    def __init__(self, feature: int = 2048):
        super().__init__()
        if not is_torch_fidelity_available():
            raise ImportError(
                "Inception features need torch-fidelity: `pip install torch-fidelity` (it downloads the FID Inception "
                "weights once). Without it, use the default `feature='digits-cnn'` or pass your own nn.Module."
            )
        from torchmetrics.image.fid import NoTrainInceptionV3

        if feature not in (64, 192, 768, 2048):
            raise ValueError(f"Inception `feature` must be one of 64, 192, 768, 2048, got {feature!r}.")
        self.num_features = feature
        self.inception = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=[str(feature), "logits_unbiased"]
        )

    @staticmethod
    def _to_uint8_rgb(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return (x * 255).round().clamp(0, 255).to(torch.uint8)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = self.inception._torch_fidelity_forward(self._to_uint8_rgb(x))
        return features.reshape(len(x), -1), logits.reshape(len(x), -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[0]


def resolve_feature_extractor(feature: str | int | nn.Module = "digits-cnn") -> nn.Module:
    """
    `"digits-cnn"` → the shipped [`DigitsCNN`]; `"inception"` or 64/192/768/2048 → [`InceptionFeatureExtractor`];
    an `nn.Module` is used as is (it receives `[N, C, H, W]` floats in [0, 1] and returns `[N, D]`; give it a
    `feature_space_name` attribute to name its reports and a `logits` method to get an Inception Score).
    """
    if isinstance(feature, nn.Module):
        return feature.eval()
    if isinstance(feature, str) and feature.lower() in ("digits-cnn", "digits_cnn", "digits"):
        return DigitsCNN.from_shipped()
    if isinstance(feature, str) and feature.lower() in ("inception", "inception-v3", "inceptionv3"):
        return InceptionFeatureExtractor(2048).eval()
    if isinstance(feature, int) and not isinstance(feature, bool):
        return InceptionFeatureExtractor(feature).eval()
    raise ValueError(
        f"`feature` must be 'digits-cnn', 'inception', an Inception feature size (64/192/768/2048) or an nn.Module, "
        f"got {feature!r}."
    )


def feature_space_name(extractor: nn.Module) -> str:
    return getattr(extractor, "feature_space_name", None) or type(extractor).__name__


@dataclass
class FeatureSet:
    """Features `[N, D]` (float64, CPU) and, when the extractor is a classifier, logits `[N, K]`."""

    features: torch.Tensor
    logits: torch.Tensor | None = None


@torch.no_grad()
def extract_features(
    images: torch.Tensor,
    extractor: nn.Module,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "features",
) -> FeatureSet:
    """Run `extractor` over `[N, C, H, W]` images in [0, 1] in batches (with a progress bar)."""
    if device is None:
        device = next(extractor.parameters(), torch.empty(0)).device
    extractor = extractor.to(device)
    has_logits = hasattr(extractor, "features_and_logits") or hasattr(extractor, "logits")
    features, logits = [], []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False):
        batch = images[start : start + batch_size].to(device)
        if hasattr(extractor, "features_and_logits"):
            f, lg = extractor.features_and_logits(batch)
        else:
            f = extractor(batch)
            lg = extractor.logits(batch) if has_logits else None
        if f.ndim != 2:
            f = f.flatten(1)
        features.append(f.double().cpu())
        if lg is not None:
            logits.append(lg.double().cpu())
    feats = torch.cat(features)
    if not torch.isfinite(feats).all():
        raise ValueError(f"The feature extractor {feature_space_name(extractor)} produced NaN/inf features.")
    return FeatureSet(feats, torch.cat(logits) if logits else None)

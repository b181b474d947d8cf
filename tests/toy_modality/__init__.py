"""
A toy modality, 2-D points, that lives entirely in this folder: the proof that a new modality is one new folder.

It is built only from the public API (`diffusers_xai.Modality`, `XAIPipelineMixin`, `SampleBatch`,
`EvaluationReport`); registering it (`diffusers_xai.register_modality(PointsModality)`) is all the trainer, the
dataset generator, the explanation card and the Space need to use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import torch
from diffusers import DiffusionPipeline
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput

from diffusers_xai import EvaluationReport, Modality, ModalityOptions, SampleBatch, XAIPipelineMixin

__all__ = ["PointsDenoiser", "PointsModality", "PointsPipeline", "two_blobs"]


def two_blobs(n: int, seed: int = 0) -> torch.Tensor:
    """`[n, 2]` points from two Gaussian blobs at (±0.5, 0), std 0.1."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-0.5, 0.0], [0.5, 0.0]])[torch.randint(0, 2, (n,), generator=g)]
    return centres + 0.1 * torch.randn(n, 2, generator=g)


@dataclass
class PointsDenoiserOutput(BaseOutput):
    sample: torch.Tensor


class PointsDenoiser(ModelMixin, ConfigMixin):
    """An MLP $\\epsilon_\\theta(x_t, t)$ over `[B, 2]` points (t enters as $t / T$)."""

    @register_to_config
    def __init__(self, hidden: int = 32, num_train_timesteps: int = 50):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, hidden), torch.nn.SiLU(),
            torch.nn.Linear(hidden, 2),
        )  # fmt: skip

    def forward(self, sample: torch.Tensor, timestep) -> PointsDenoiserOutput:
        t = torch.as_tensor(timestep, dtype=sample.dtype, device=sample.device).reshape(-1, 1)
        t = t.expand(sample.shape[0], 1) / self.config.num_train_timesteps
        return PointsDenoiserOutput(sample=self.net(torch.cat([sample, t], dim=1)))


@dataclass
class PointsPipelineOutput(BaseOutput):
    points: torch.Tensor
    trace: object = None


class PointsPipeline(XAIPipelineMixin, DiffusionPipeline):
    """`[N, 2]` points; everything but the shape and the output comes from the skeleton."""

    def __init__(self, denoiser: PointsDenoiser, scheduler):
        super().__init__()
        self.register_modules(denoiser=denoiser, scheduler=scheduler)

    sample_shape = (2,)

    @torch.no_grad()
    def __call__(self, batch_size=1, generator=None, num_inference_steps=50, trace=None, return_dict=True):
        run = self.sample(trace, batch_size=batch_size, generator=generator, num_inference_steps=num_inference_steps)
        return PointsPipelineOutput(points=run.final_sample, trace=run.trace) if return_dict else (run.final_sample,)


@dataclass
class PointsOptions(ModalityOptions):
    num_points: int = 256
    hidden: int = 32


class PointsModality(Modality):
    name = "points"
    pipeline_class = PointsPipeline
    data_noun = "points"
    options_class = PointsOptions

    def load_dataset(self, config):
        points = two_blobs(config.modality_options.num_points, config.seed or 0)
        return datasets.Dataset.from_dict({"x": points[:, 0].tolist(), "y": points[:, 1].tolist()})

    def fit_preprocessor(self, dataset, config):
        return None

    def to_tensors(self, examples, preprocessor, config):
        return {"x0": torch.tensor([examples["x"], examples["y"]], dtype=torch.float32).T}

    def build_model(self, config, preprocessor):
        return PointsDenoiser(hidden=config.modality_options.hidden, num_train_timesteps=config.num_train_timesteps)

    def build_pipeline(self, model, scheduler, preprocessor):
        return PointsPipeline(denoiser=model, scheduler=scheduler)

    def evaluate(self, pipeline, config, num_samples, output_dir):
        generator = torch.Generator().manual_seed((config.seed or 0) + 1)
        fake = pipeline(batch_size=num_samples, generator=generator, num_inference_steps=20).points
        real = two_blobs(config.modality_options.num_points, config.seed or 0)
        report = EvaluationReport(modality=self.name, num_real=len(real), num_generated=len(fake))
        report.add("mean |x| (real 0.5)", fake[:, 0].abs().mean().item(), key="mean_abs_x")
        report.add("share of points with x > 0", (fake[:, 0] > 0).float().mean().item(), key="right_share")
        return report

    def sample_batch(self, pipeline, generators, num_inference_steps, trace):
        points = torch.cat(
            [pipeline(batch_size=1, generator=g, num_inference_steps=num_inference_steps).points for g in generators]
        )
        features = datasets.Features({"x": datasets.Value("float32"), "y": datasets.Value("float32")})
        return SampleBatch(columns={"x": points[:, 0].tolist(), "y": points[:, 1].tolist()}, features=features)

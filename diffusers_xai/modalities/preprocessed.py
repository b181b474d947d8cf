"""The glue the tabular and time-series modalities share: a pipeline of `denoiser`, `scheduler` and a fitted
`preprocessor` that samples `pipeline.count_name` samples into one output field (`rows`, `series`).

[`PreprocessedModality`] builds that pipeline under the modality's scheduler defaults, samples it with DDIM for the
end-of-training evaluation, and explains one traced DDIM generation with [`explain_rows`]; a modality names its
defaults and fills in how its attributions are computed and plotted.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch

from ..pipelines.schedulers import make_scheduler, scheduler_name
from .base import Modality
from .explanations import ATTRIBUTION_CARD_METHODS, explain_rows
from .sampling import ddim_copy, sample_in_batches, sampling_steps

__all__ = ["PreprocessedModality"]


class PreprocessedModality(Modality):
    """
    A [`Modality`] whose `pipeline_class(denoiser=, scheduler=, preprocessor=)` returns its samples in the field
    `sample_field` of its output. Subclasses set:

    - `sample_field` (`str`): the output field of the samples (`"rows"`, `"series"`);
    - `evaluation_batch_size` (`int`): samples per call when sampling for the end-of-training evaluation;
    - `ddim` if validation and evaluation sample with other DDIM settings than the pipeline's;
    - `attribute`, `plot_attributions`, `plot_commit_steps` (and `attribute_kwargs`): the explanation card's parts.
    """

    sample_field: ClassVar[str]
    evaluation_batch_size: ClassVar[int]
    explained_samples: ClassVar[int] = 16  # SHAP costs ~0.3 s a sample
    explain_methods = ATTRIBUTION_CARD_METHODS
    always_explain_methods = ("commit_steps",)

    def scheduler_defaults(self, name: str, preprocessor) -> dict[str, Any]:
        """The keyword arguments of the scheduler `name` for data of `preprocessor`: the pipeline class's."""
        return self.pipeline_class.scheduler_defaults(name, preprocessor)

    def build_pipeline(self, model, scheduler, preprocessor):
        """The pipeline with the trainer's scheduler under this data's defaults (the trainer's DDPM clips x0 to
        [-1, 1], the pixel default)."""
        name = scheduler_name(scheduler)
        scheduler = make_scheduler(name, scheduler.config, **self.scheduler_defaults(name, preprocessor))
        return self.pipeline_class(denoiser=model, scheduler=scheduler, preprocessor=preprocessor)

    def ddim(self, pipeline):
        """`pipeline` under DDIM, progress bar off: how validation, evaluation and explanations sample."""
        return ddim_copy(pipeline)

    def draw(self, pipeline, num_samples: int, **kwargs) -> Any:
        """`num_samples` samples of `pipeline` (its `sample_field`); `kwargs` go to the pipeline."""
        return getattr(pipeline(**{pipeline.count_name: num_samples}, **kwargs), self.sample_field)

    def evaluation_sampler(self, pipeline, config) -> tuple[Any, int]:
        """The pipeline and step count [`sample_for_evaluation`] samples with: DDIM with
        `validation_num_inference_steps`."""
        return self.ddim(pipeline), sampling_steps(config)

    def sample_for_evaluation(self, pipeline, config, num_samples: int) -> list:
        """`num_samples` samples of [`evaluation_sampler`] in batches of `evaluation_batch_size`
        ([`sample_in_batches`]): the list of batch outputs."""
        sampler, steps = self.evaluation_sampler(pipeline, config)
        return sample_in_batches(
            lambda n, g: self.draw(sampler, n, generator=g, num_inference_steps=steps),
            num_samples,
            config,
            batch_size=self.evaluation_batch_size,
        )

    # ---- the explanation card ----
    def explain(self, pipeline, config, methods: tuple[str, ...], output_dir: str) -> dict:
        """Attributions of the predicted x0 to x_t (IG / SHAP) at the middle step of a traced DDIM run of
        `explained_samples` samples, and the step at which each part of a sample commits ([`explain_rows`])."""
        ddim = self.ddim(pipeline)
        out = ddim(
            **{ddim.count_name: self.explained_samples},
            generator=torch.Generator("cpu").manual_seed(config.seed or 0),
            num_inference_steps=sampling_steps(config),
            trace=True,
        )
        return explain_rows(
            ddim,
            out.trace,
            self.attribute,
            methods,
            output_dir,
            self.plot_attributions,
            lambda trace, path: self.plot_commit_steps(ddim, trace, path),
            seed=config.seed or 0,
            modality=self.name,
            **self.attribute_kwargs(out),
        )

    def attribute(self, explainer, trace, **kwargs):
        """The explanation of `explainer` over the traced run (`.attributions`, `.delta`)."""
        return explainer.attribute(trace, **kwargs)

    def attribute_kwargs(self, output) -> dict[str, Any]:
        """What `attribute` needs from the traced pipeline output besides the trace (e.g. the class labels)."""
        return {}

    @abstractmethod
    def plot_attributions(self, explanation, path: str) -> str:
        """Plot an explanation of `attribute` to the PNG `path` (`diffusers_xai.viz`)."""

    @abstractmethod
    def plot_commit_steps(self, pipeline, trace, path: str) -> str:
        """Compute the commit steps of `trace` and plot them to the PNG `path`."""

"""What the Tabular and Time series tabs share: a pipeline of `[B, *S]` samples run with a trace, its recorded steps,
one step explained by `DenoiserAttribution`/`DenoiserShap`, commit steps and quality against the real data.

A tab is a subclass of `DenoiserTab` that names what differs as class attributes (the bundled model, the batch's
name and bounds, labels) and fills in the views: `model_info`, `generate`, `step_view`, `explain`, `commit`,
`load_generated`, `quality_report` and the components of its layout. The skeleton of the handlers and the layout
with its events are here once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from diffusers_xai import Trace
from diffusers_xai.explain import build_explainer, step_trace

from .common import (
    FILE_TTL_SECONDS,
    MODEL_LOCK,
    BundledModel,
    handle_errors,
    load_trace,
    new_output_path,
    recorded_step,
    step_caption,
    step_slider_update,
    verdicts_markdown,
)
from .layout import MODEL_RUN, SCRUB, attributions_panel, model_box, quality_tab, sampling_controls, step_controls
from .runs import BatchLimits, generation_state, quality_results, save_attributions, traced_generation


class DenoiserTab(ABC):
    """The handlers and layout of a tab over a `[B, *S]` pipeline; subclasses set the attributes below."""

    name: str  # the modality: its verdicts, the API names (`{name}_generate`, ...)
    prefix: str  # element ids (`{prefix}-generate`, ...) and output files (`{prefix}-trace-….safetensors`, ...)
    bundle: BundledModel  # the pipeline class, the bundled checkpoint and its label in the model box
    env_model: str  # the environment variable naming the tab's default model
    count_label: str  # the batch as the Generate slider and the input checks name it ("Rows")
    count_noun: str  # the batch in the generation summary ("row(s)")
    count_argument: str  # the pipeline's batch-size argument ("num_rows")
    output_type: str  # the pipeline's output type for Generate
    default_count: int
    max_count: int
    max_work: int  # steps x batch per Generate (`common.check_work`)
    # every candidate of the explanation benchmark; the Explain tab shows each one's verdict beside it
    methods = ("integrated_gradients", "occlusion", "shap", "saliency")
    # quality: only the bundled model's real data are known
    no_reference: str  # the error for any other model
    reference: str  # what the synthetic data are compared with ("the real table")
    min_evaluated: int
    evaluated_noun: str
    # layout
    trajectory_heading: str
    attributions_tab: str
    attributions_text: str
    heatmap_label: str
    commit_button: str
    commit_file: str  # the name of the commit-step plots
    commit_labels: tuple[str, str]  # the commit-step plot's and numbers' labels
    commit_height: int
    quality_text: str

    # ---- handlers: Gradio calls them with the components' values in the order of `build`'s events ----
    @abstractmethod
    def model_info(self, model: str | None):
        """The model summary (and the choices of `option_inputs`)."""

    @abstractmethod
    def generate(self, *values, progress):
        """Generate from `[model, scheduler, steps, seed, count, *option_inputs]`: the generated view, the saved
        file, `self.trajectory(...)`, the updated `target_inputs` and the generation summary."""

    @abstractmethod
    def explain(self, state, method, *values, progress):
        """Explain the recorded step of `[*target_inputs, step]`: `self.explained(...)`."""

    @property
    def batch(self) -> BatchLimits:
        return BatchLimits(self.count_label, self.max_count, self.max_work, self.count_noun)

    def sample(self, model, scheduler: str, num_inference_steps, seed, count, progress, *options, sample_seeds=None):
        """Check the inputs and generate `count` samples with a trace ([`traced_generation`], which `sample_seeds`
        goes to): `(pipe, output, state, info)`, where the state holds the saved trace (which records the guidance
        scale, so Explain explains the guided mix that sampled the run) and `info` is the generation summary."""

        def call_kwargs(pipe, n: int) -> dict:
            return {self.count_argument: n, **self.pipeline_inputs(pipe, *options), "output_type": self.output_type}

        args = (self.bundle.load, model, scheduler, num_inference_steps, seed, count, progress, self.batch)
        run = traced_generation(*args, call_kwargs, sample_seeds=sample_seeds)
        source = self.bundle.source_of(model)
        state = generation_state(run.output.trace, f"{self.prefix}-trace", source, scheduler, run.steps)
        return run.pipe, run.output, state, run.info

    def pipeline_inputs(self, pipe, *options) -> dict:
        """The pipeline's arguments from Generate's `option_inputs` (checked against the loaded `pipe`)."""
        return {}

    def trajectory(self, pipe, trace: Trace, state: dict) -> tuple:
        """What Generate shows of the trajectory: the state, the step slider at the last step, its view and caption."""
        last = len(trace) - 1
        return (state, step_slider_update(trace, last), *self.recorded_view(pipe, trace, last, state))

    def recorded_view(self, pipe, trace: Trace, position, state: dict) -> tuple:
        """The view of the recorded step at slider `position` and its caption."""
        position, step, _ = recorded_step(trace, position)
        return self.step_view(pipe, step, state), step_caption(trace, position)

    @abstractmethod
    def step_view(self, pipe, step, state: dict):
        """What the step slider shows of one recorded step."""

    @handle_errors
    def show_step(self, state, position):
        """The view of one recorded step and its caption."""
        trace = load_trace(state)
        return self.recorded_view(self.bundle.load(state["model"]), trace, position, state)

    def open_run(self, state) -> tuple:
        """`(trace, pipe)` of the visitor's last Generate."""
        trace = load_trace(state)
        return trace, self.bundle.load(state["model"])

    def attribute(
        self, pipe, method: str, step, latents, attribute: Callable, progress, guidance_scale: float = 1.0
    ) -> tuple:
        """`attribute(explainer, inputs)` with the explainer of `method` on `latents` at the recorded `step` (of a
        run guided at `guidance_scale`: the guided mix is explained), under the model lock: `(explanation, folder)`,
        with a fresh folder for the explanation's files."""
        progress(0, desc=f"Explaining with {method}")
        with MODEL_LOCK:
            explainer = build_explainer(pipe, method, self.name).guided(guidance_scale)
            explanation = attribute(explainer, step_trace(latents.float(), step.timestep, step.step_index))
        folder = new_output_path(f"{self.prefix}-{method}")
        folder.mkdir()
        return explanation, folder

    def explained(self, folder: Path, method: str, step, plot: str, summary: str, numbers: dict, attributions):
        """What Explain shows: the plot, the summary, the numbers (method and step first) and the zipped folder."""
        numbers = {"method": method, "timestep": int(step.timestep), "step_index": int(step.step_index), **numbers}
        return plot, summary, numbers, save_attributions(folder, numbers, attributions)

    @handle_errors
    def commit(self, state):
        """When each part of the samples settles along the trajectory of x0: the plot, its summary and numbers."""
        trace, pipe = self.open_run(state)
        result = self.commit_steps(trace, pipe)
        plot = self.plot_commit_steps(result, str(new_output_path(self.commit_file, ".png")))
        return (plot, *self.commit_summary(result))

    @abstractmethod
    def commit_steps(self, trace: Trace, pipe):
        """The commit steps of the run (`diffusers_xai.explain`)."""

    @abstractmethod
    def plot_commit_steps(self, result, path: str) -> str:
        """Plot `result` (`diffusers_xai.viz`) to `path`."""

    @abstractmethod
    def commit_summary(self, result) -> tuple[str, dict]:
        """The summary of `result` and its numbers."""

    @handle_errors
    def evaluate(self, state, progress=gr.Progress()):  # noqa: B008
        """The quality report of the generated data against the real data the bundled model learned."""
        load_trace(state)
        if state["model"] != str(self.bundle.path):
            raise ValueError(self.no_reference)
        synthetic = self.load_generated(state)
        if len(synthetic) < self.min_evaluated:
            raise ValueError(
                f"Quality metrics need at least {self.min_evaluated} {self.evaluated_noun}; "
                f"generate more {self.count_label.lower()}."
            )
        progress(0, desc=f"Evaluating against {self.reference}")
        folder = new_output_path(f"{self.prefix}-quality")
        with MODEL_LOCK:  # CPU-heavy: queued with the model runs
            report = self.quality_report(state, synthetic, folder)
        return quality_results(report, folder)

    @abstractmethod
    def load_generated(self, state: dict):
        """The generated data saved by Generate, one sample per row."""

    @abstractmethod
    def quality_report(self, state: dict, synthetic, folder: Path):
        """The `EvaluationReport` of `synthetic` against the real data, its artifacts in `folder`."""

    # ---- layout: the components that differ ----
    def option_inputs(self) -> list:
        """Generate's inputs after the batch size (also filled by the model summary)."""
        return []

    @abstractmethod
    def generated_component(self):
        """Where Generate shows the samples."""

    @abstractmethod
    def step_component(self):
        """Where the step slider shows a recorded step."""

    @abstractmethod
    def target_inputs(self) -> list:
        """Explain's inputs between the method and the step (also filled by Generate)."""

    def build(self) -> list[tuple]:
        """The tab's components and events (call inside a `gr.Tab`); returns its page-load events."""
        name, prefix = self.name, self.prefix
        state = gr.State(None, time_to_live=FILE_TTL_SECONDS)
        model, model_md = model_box(
            self.env_model, self.bundle.label, self.bundle.pipeline_class.__name__, f"{prefix}-model"
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                scheduler, steps, seed = sampling_controls(f"{prefix}-seed")
                count = gr.Slider(1, self.max_count, value=self.default_count, step=1, label=self.count_label)
                options = self.option_inputs()
                run = gr.Button("Generate", variant="primary", elem_id=f"{prefix}-generate")
                info = gr.Markdown()
                saved = gr.File(label=f"{self.count_label} (.csv)", interactive=False)
            with gr.Column(scale=2):
                generated = self.generated_component()
        step_slider, step_md = step_controls(self.trajectory_heading, f"{prefix}-step", f"{prefix}-step-caption")
        step_view = self.step_component()
        with gr.Tabs():
            with gr.Tab(self.attributions_tab):
                gr.Markdown(self.attributions_text)
                with gr.Accordion("Method verdicts (faithfulness benchmark)", open=False):
                    gr.Markdown(verdicts_markdown(name), elem_id=f"{name}-verdicts")
                with gr.Row():
                    method = gr.Dropdown(list(self.methods), value=self.methods[0], label="Method")
                    targets = self.target_inputs()
                explain_btn, explain_outputs = attributions_panel(prefix, self.heatmap_label)
            with gr.Tab("Commit steps"):
                commit_btn = gr.Button(self.commit_button)
                commit_md = gr.Markdown()
                with gr.Row():
                    commit_plot = gr.Image(label=self.commit_labels[0], type="filepath", height=self.commit_height)
                    commit_json = gr.JSON(label=self.commit_labels[1], max_height=300)
            quality_btn, quality_outputs = quality_tab(prefix, self.quality_text)

        info_outputs = [model_md, *options]
        model.change(
            self.model_info,
            model,
            info_outputs,
            api_name=f"{name}_model_changed",
            api_visibility="private",
            **MODEL_RUN,
        )
        run.click(
            self.generate,
            [model, scheduler, steps, seed, count, *options],
            [generated, saved, state, step_slider, step_view, step_md, *targets, info],
            api_name=f"{name}_generate",
            **MODEL_RUN,
        )
        step_slider.change(
            self.show_step, [state, step_slider], [step_view, step_md], api_name=f"{name}_trajectory", **SCRUB
        )
        explain_btn.click(
            self.explain,
            [state, method, *targets, step_slider],
            explain_outputs,
            api_name=f"{name}_explain",
            **MODEL_RUN,
        )
        commit_btn.click(self.commit, [state], [commit_plot, commit_md, commit_json], api_name=f"{name}_commit_steps")
        quality_btn.click(self.evaluate, [state], quality_outputs, api_name=f"{name}_evaluate", **MODEL_RUN)
        return [(self.model_info, model, info_outputs, f"{name}_model_info")]

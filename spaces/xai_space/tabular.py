"""The Tabular tab: generate rows with a `TabularXAIPipeline`, follow x0 over the steps, per-column attributions."""

from __future__ import annotations

import gradio as gr
import pandas as pd
import torch
from safetensors.torch import load_file

from diffusers_xai import TabularXAIPipeline
from diffusers_xai.evaluation import evaluate_table
from diffusers_xai.explain import column_attributions, column_commit_steps
from diffusers_xai.modalities.tabular import load_table
from diffusers_xai.viz import plot_column_attributions, plot_column_commit_steps

from .common import (
    SPACE_DIR,
    BundledModel,
    check_choice,
    guidance_inputs,
    handle_errors,
    new_output_path,
    recorded_step,
    save_tensors,
    save_text,
    state_file,
)
from .denoiser_tab import DenoiserTab
from .given_values import ANY_ROW, GivenValueSeeds, given_choices

BUNDLED_MODEL = SPACE_DIR / "wine-tabddpm"
BUNDLED_LABEL = "wine-tabddpm (bundled, offline)"
BUNDLED_DATASET = "wine"  # what the bundled model was trained on (`train/configs/wine.yaml`): the quality reference
ENV_MODEL = "DIFFUSERS_XAI_TABULAR_MODEL"
MAX_ROWS = 500
# steps x rows per Generate (200 steps of 500 rows): the MLP denoiser is cheap per row
MAX_WORK = 100_000
MAX_EXPLAINED_ROWS = 64  # attributions are computed for the first rows only: their cost grows with the rows
MIN_EVALUATED_ROWS = 20  # the detection classifier's 5 folds need a few rows of each kind
PREVIEW_ROWS = 10
RANDOM_LABEL = "random (training frequencies)"
# classifier-free guidance, for models trained with `class_dropout_prob` (a null class): the benchmark measured
# scales 1 to 2 (README, "Classifier-free guidance for tables"); past that, rows leave the real table's support
MAX_GUIDANCE = 4.0
ALL_COLUMNS = "all columns"
METHODS = DenoiserTab.methods


def columns_of(preprocessor) -> list[str]:
    return [c["name"] for c in preprocessor.numerical + preprocessor.categorical]


def class_choices(preprocessor) -> list[str]:
    condition = preprocessor.condition
    return [RANDOM_LABEL] + ([str(c) for c in condition["categories"]] if condition is not None else [])


def parse_class(preprocessor, label) -> object | None:
    """The condition value behind a dropdown entry (`None`: draw classes from the training frequencies)."""
    check_choice("class", label, class_choices(preprocessor))
    if label == RANDOM_LABEL:
        return None
    return {str(c): c for c in preprocessor.condition["categories"]}[label]


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.round(3)


def _labels(state: dict) -> torch.Tensor | None:
    path = state.get("labels_path")
    return None if path is None else load_file(state_file(state, "labels_path"))["class_labels"]


class TabularTab(DenoiserTab):
    name = prefix = "tabular"
    bundle, env_model = BundledModel(TabularXAIPipeline, BUNDLED_MODEL, BUNDLED_LABEL), ENV_MODEL
    count_label, count_noun, count_argument, output_type = "Rows", "row(s)", "num_rows", "pd"
    default_count, max_count, max_work = 100, MAX_ROWS, MAX_WORK
    no_reference = (
        "Quality metrics compare with the real table the model was trained on, which is known only for the "
        f"bundled model ({BUNDLED_DATASET})."
    )
    reference, min_evaluated, evaluated_noun = "the real table", MIN_EVALUATED_ROWS, "rows"
    trajectory_heading = "Trajectory: the predicted x0 of the first rows at each recorded step, decoded"
    attributions_tab = "Column attributions"
    attributions_text = (
        "Which columns of the noisy row x_t (and the class) drive each generated column of the predicted "
        f"x0 at the recorded step above, averaged over the first {MAX_EXPLAINED_ROWS} rows."
    )
    heatmap_label = "Mean |attribution|"
    commit_button, commit_file = "When does each column settle?", "column-commit"
    commit_labels, commit_height = ("Commit step per column", "Mean commit fraction"), 360
    quality_text = (
        "The generated rows against the real wine table (the bundled model's training data): SDMetrics column "
        "shapes and pair trends, detection AUC, train-synthetic-test-real, distance to the closest real record."
    )

    @handle_errors
    def model_info(self, model: str | None):
        """Markdown summary of a tabular model, the class choices of its condition column, and the guidance slider
        (movable only for a model with a null class)."""
        pipe = self.bundle.load(model)
        pre = pipe.preprocessor
        condition = pre.condition
        guided = pipe.null_class_label is not None
        text = self.bundle.summary(
            pipe, model, f"{len(pre.numerical)} numerical and {len(pre.categorical)} categorical column(s)"
        ) + (f"; conditioned on `{condition['name']}`" if condition is not None else "; unconditional")
        text += " with classifier-free guidance (a null class)." if guided else "."
        return (
            text,
            gr.Dropdown(choices=class_choices(pre), value=RANDOM_LABEL),
            gr.Slider(interactive=guided, value=1.0),
            gr.Dropdown(choices=[ANY_ROW, *given_choices(pre)], value=ANY_ROW),
        )

    def pipeline_inputs(self, pipe, label, guidance_scale=1.0) -> dict:
        return {"class_labels": parse_class(pipe.preprocessor, label), **guidance_inputs(guidance_scale, MAX_GUIDANCE)}

    @handle_errors
    def generate(
        self,
        model,
        scheduler,
        num_inference_steps,
        seed,
        num_rows,
        label,
        guidance_scale=1.0,
        given=ANY_ROW,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008 (Gradio finds its progress tracker by this default)
    ):
        """Generate rows (with a trace), save them as CSV, show the decoded x0 of the first rows at the last step.
        With a `given` value (`"column = level"`), every row holds it: see `given_values`."""
        options = (label, guidance_scale)
        seeds = GivenValueSeeds(given, lambda pipe: self.pipeline_inputs(pipe, *options), self.max_work)
        args = (model, scheduler, num_inference_steps, seed, num_rows, progress, *options)
        pipe, out, state, info = self.sample(*args, sample_seeds=seeds)
        info += seeds.summary(out.rows)
        state["rows_path"] = str(save_text(out.rows.to_csv(index=False), new_output_path("rows", ".csv")))
        if out.class_labels is not None:
            path = save_tensors({"class_labels": out.class_labels.cpu()}, new_output_path("labels", ".safetensors"))
            state["labels_path"] = str(path)
        return (
            rounded(out.rows),
            state["rows_path"],
            *self.trajectory(pipe, out.trace, state),
            gr.Dropdown(choices=[ALL_COLUMNS, *columns_of(pipe.preprocessor)], value=ALL_COLUMNS),
            info,
        )

    def step_view(self, pipe, step, state) -> pd.DataFrame:
        """The predicted x0 of the first rows, decoded to the original columns."""
        labels = _labels(state)
        x0 = step.pred_original_sample[:PREVIEW_ROWS].float()
        return rounded(pipe.preprocessor.inverse_transform(x0, None if labels is None else labels[:PREVIEW_ROWS]))

    @handle_errors
    def explain(self, state, method, target, position, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        """Attribute each generated column of x0 to the columns of x_t (and the class) at one recorded step."""
        check_choice("method", method, METHODS)
        trace, pipe = self.open_run(state)
        check_choice("target column", target, [ALL_COLUMNS, *columns_of(pipe.preprocessor)])
        position, step, _ = recorded_step(trace, position)
        rows = min(MAX_EXPLAINED_ROWS, step.latents.shape[0])
        labels = _labels(state)
        guidance = trace.guidance_scale  # the run's: the guided mix that sampled the rows is explained
        explanation, folder = self.attribute(
            pipe,
            method,
            step,
            step.latents[:rows],
            lambda explainer, inputs: column_attributions(
                explainer,
                inputs,
                target=None if target == ALL_COLUMNS else target,
                class_labels=None if labels is None else labels[:rows],
            ),
            progress,
            guidance,
        )
        plot = plot_column_attributions(explanation, str(folder / f"{method}_columns.png"), step=0)
        matrix = explanation.matrix(0)  # [targets, input columns]: mean |attribution| over the rows
        numbers = {
            "rows": rows,
            "guidance_scale": guidance,
            "mean_abs_attribution": {
                t: {c: round(float(v), 6) for c, v in zip(explanation.columns, matrix[i])}
                for i, t in enumerate(explanation.targets)
            },
        }
        if explanation.condition is not None:
            numbers["condition"] = {
                t: round(float(v), 6) for t, v in zip(explanation.targets, explanation.condition[0].abs().mean(dim=0))
            }
        strongest = []
        for i, t in enumerate(explanation.targets):  # every column mostly follows its own noisy value: name the next
            others = matrix[i].clone()
            if t in explanation.columns:
                others[explanation.columns.index(t)] = float("-inf")
            strongest.append(f"`{t}` ← `{explanation.columns[int(others.argmax())]}`")
        mix = f" of the guided prediction (scale {guidance:g})" if guidance > 1 else ""
        summary = (
            f"**{method}**{mix} at t = {step.timestep} over the first {rows} rows. Apart from its own noisy value, "
            f"the column of x_t that drives each generated column most: {', '.join(strongest)}."
        )
        return self.explained(folder, method, step, plot, summary, numbers, explanation.attributions)

    def commit_steps(self, trace, pipe):
        return column_commit_steps(trace, pipe.preprocessor)

    def plot_commit_steps(self, result, path: str) -> str:
        return plot_column_commit_steps(result, path)

    def commit_summary(self, result) -> tuple[str, dict]:
        """When each column's decoded value settles along the trajectory of x0."""
        means = result.fraction.float().mean(dim=0)
        order = result.order()
        return (
            f"Earliest to settle: `{order[0]}`; last: `{order[-1]}` (mean commit step, as a fraction of the run).",
            {c: round(float(m), 4) for c, m in zip(result.columns, means)},
        )

    def load_generated(self, state) -> pd.DataFrame:
        return pd.read_csv(state_file(state, "rows_path"))

    def quality_report(self, state, synthetic, folder):
        """Fidelity, utility and privacy of the generated rows against the real table the bundled model learned."""
        condition = self.bundle.load(state["model"]).preprocessor.condition
        return evaluate_table(
            load_table(BUNDLED_DATASET),
            synthetic,
            target=None if condition is None else condition["name"],
            sdmetrics_privacy=False,  # SDMetrics' DCR protection takes tens of seconds; our own DCR is reported
            output_dir=folder,
            dataset_name=BUNDLED_DATASET,
        )

    # ---- layout ----
    def option_inputs(self) -> list:
        return [
            gr.Dropdown([RANDOM_LABEL], value=RANDOM_LABEL, label="Class (condition column)"),
            gr.Slider(
                1.0,
                MAX_GUIDANCE,
                value=1.0,
                step=0.25,
                label="Guidance scale (models with a null class)",
                interactive=False,
                elem_id="tabular-guidance",
            ),
            gr.Dropdown(
                [ANY_ROW], value=ANY_ROW, label="Rows with a given value (by rejection)", elem_id="tabular-given"
            ),
        ]

    def generated_component(self):
        return gr.Dataframe(label="Generated rows", elem_id="tabular-rows", max_height=360, interactive=False)

    def step_component(self):
        return gr.Dataframe(label="Predicted x0", elem_id="tabular-x0", interactive=False)

    def target_inputs(self) -> list:
        return [gr.Dropdown([ALL_COLUMNS], value=ALL_COLUMNS, label="Generated column")]


TAB = TabularTab()
# the handlers by name (the app's events and the tests call them)
source_of, load_tabular_pipeline = TAB.bundle.source_of, TAB.bundle.load
model_info, generate = TAB.model_info, TAB.generate
show_step, explain, commit, evaluate = TAB.show_step, TAB.explain, TAB.commit, TAB.evaluate
build_tabular_tab = TAB.build

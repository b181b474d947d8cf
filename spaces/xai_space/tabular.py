"""The Tabular tab: generate rows with a `TabularXAIPipeline`, follow x0 over the steps, per-column attributions."""

from __future__ import annotations

import gradio as gr
import pandas as pd
import torch
from safetensors.torch import load_file

from diffusers_xai import TabularXAIPipeline
from diffusers_xai.evaluation import evaluate_table
from diffusers_xai.explain import (
    DenoiserAttribution,
    DenoiserShap,
    column_attributions,
    column_commit_steps,
    step_trace,
)
from diffusers_xai.modalities.tabular import load_table
from diffusers_xai.viz import plot_column_attributions, plot_column_commit_steps

from .common import (
    FILE_TTL_SECONDS,
    MAX_SEED,
    MODEL_LOCK,
    SPACE_DIR,
    check_choice,
    check_int,
    check_work,
    count_parameters,
    denoiser_of,
    display_name,
    generation_info,
    handle_errors,
    load_pipeline,
    load_trace,
    new_output_path,
    recorded_step,
    resolve_source,
    save_tensors,
    save_text,
    state_file,
    step_caption,
    step_slider_update,
    verdicts_markdown,
)
from .layout import MODEL_RUN, SCRUB, attributions_panel, model_box, quality_tab, sampling_controls, step_controls
from .runs import generation_state, quality_results, sample_traced, sampling_pipeline, save_attributions

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
ALL_COLUMNS = "all columns"
METHODS = ("integrated_gradients", "shap")


# ---------------------------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------------------------
def source_of(model: str | None) -> str:
    return resolve_source(model, BUNDLED_LABEL, BUNDLED_MODEL)


def load_tabular_pipeline(model: str | None):
    return load_pipeline(TabularXAIPipeline, source_of(model), BUNDLED_MODEL)


def columns_of(preprocessor) -> list[str]:
    return [c["name"] for c in preprocessor.numerical + preprocessor.categorical]


def class_choices(preprocessor) -> list[str]:
    condition = preprocessor.condition
    return [RANDOM_LABEL] + ([str(c) for c in condition["categories"]] if condition is not None else [])


@handle_errors
def model_info(model: str | None):
    """Markdown summary of a tabular model, and the class choices of its condition column."""
    pipe = load_tabular_pipeline(model)
    pre = pipe.preprocessor
    n_params = count_parameters(denoiser_of(pipe))
    condition = pre.condition
    text = (
        f"**{display_name(source_of(model), BUNDLED_LABEL, BUNDLED_MODEL)}**: "
        f"{len(pre.numerical)} numerical and {len(pre.categorical)} categorical column(s), "
        f"{n_params / 1e6:.2f}M parameters, T={pipe.scheduler.config.num_train_timesteps}; "
        + (f"conditioned on `{condition['name']}`." if condition is not None else "unconditional.")
    )
    choices = class_choices(pre)
    return text, gr.Dropdown(choices=choices, value=RANDOM_LABEL)


def parse_class(preprocessor, label) -> object | None:
    """The condition value behind a dropdown entry (`None`: draw classes from the training frequencies)."""
    check_choice("class", label, class_choices(preprocessor))
    if label == RANDOM_LABEL:
        return None
    return {str(c): c for c in preprocessor.condition["categories"]}[label]


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.round(3)


# ---------------------------------------------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------------------------------------------
def _labels(state: dict) -> torch.Tensor | None:
    path = state.get("labels_path")
    return None if path is None else load_file(state_file(state, "labels_path"))["class_labels"]


def _decoded_x0(pipe, trace, position, labels) -> tuple[pd.DataFrame, str]:
    position, step, _ = recorded_step(trace, position)
    x0 = step.pred_original_sample[:PREVIEW_ROWS].float()
    frame = pipe.preprocessor.inverse_transform(x0, None if labels is None else labels[:PREVIEW_ROWS])
    return rounded(frame), step_caption(trace, position)


@handle_errors
def generate(
    model,
    scheduler,
    num_inference_steps,
    seed,
    num_rows,
    label,
    progress=gr.Progress(track_tqdm=True),  # noqa: B008 (Gradio finds its progress tracker by this default)
):
    """Generate rows (with a trace), save them as CSV, show the decoded x0 of the first rows at the last step."""
    seed = check_int("Seed", seed, 0, MAX_SEED)
    num_rows = check_int("Rows", num_rows, 1, MAX_ROWS)
    pipe, num_inference_steps = sampling_pipeline(
        load_tabular_pipeline, model, scheduler, num_inference_steps, progress
    )
    check_work("Rows", num_inference_steps, num_rows, MAX_WORK)
    class_value = parse_class(pipe.preprocessor, label)
    out = sample_traced(pipe, seed, num_inference_steps, num_rows=num_rows, class_labels=class_value, output_type="pd")
    trace = out.trace
    rows_path = save_text(out.rows.to_csv(index=False), new_output_path("rows", ".csv"))
    state = generation_state(
        trace, "tabular-trace", source_of(model), scheduler, num_inference_steps, rows_path=str(rows_path)
    )
    labels = out.class_labels
    if labels is not None:
        path = save_tensors({"class_labels": labels.cpu()}, new_output_path("labels", ".safetensors"))
        state["labels_path"] = str(path)
    last = len(trace) - 1
    preview, caption = _decoded_x0(pipe, trace, last, labels)
    return (
        rounded(out.rows),
        state["rows_path"],
        state,
        step_slider_update(trace, last),
        preview,
        caption,
        gr.Dropdown(choices=[ALL_COLUMNS, *columns_of(pipe.preprocessor)], value=ALL_COLUMNS),
        generation_info(f"{num_rows} row(s)", scheduler, num_inference_steps, seed, trace),
    )


@handle_errors
def show_step(state, position):
    """The predicted x0 of the first rows at one recorded step, decoded to the original columns."""
    trace = load_trace(state)
    pipe = load_tabular_pipeline(state["model"])
    return _decoded_x0(pipe, trace, position, _labels(state))


@handle_errors
def explain(state, method, target, position, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
    """Attribute each generated column of x0 to the columns of x_t (and the class) at one recorded step."""
    check_choice("method", method, METHODS)
    trace = load_trace(state)
    pipe = load_tabular_pipeline(state["model"])
    check_choice("target column", target, [ALL_COLUMNS, *columns_of(pipe.preprocessor)])
    position, step, _ = recorded_step(trace, position)
    rows = min(MAX_EXPLAINED_ROWS, step.latents.shape[0])
    labels = _labels(state)
    progress(0, desc=f"Explaining with {method}")
    with MODEL_LOCK:
        explainer = DenoiserShap(pipe) if method == "shap" else DenoiserAttribution(pipe, method)
        explanation = column_attributions(
            explainer,
            step_trace(step.latents[:rows].float(), step.timestep, step.step_index),
            target=None if target == ALL_COLUMNS else target,
            class_labels=None if labels is None else labels[:rows],
        )
    folder = new_output_path(f"tabular-{method}")
    folder.mkdir()
    plot = plot_column_attributions(explanation, str(folder / f"{method}_columns.png"), step=0)
    matrix = explanation.matrix(0)  # [targets, input columns]: mean |attribution| over the rows
    numbers = {
        "method": method,
        "timestep": int(step.timestep),
        "step_index": int(step.step_index),
        "rows": rows,
        "mean_abs_attribution": {
            t: {c: round(float(v), 6) for c, v in zip(explanation.columns, matrix[i])}
            for i, t in enumerate(explanation.targets)
        },
    }
    if explanation.condition is not None:
        numbers["condition"] = {
            t: round(float(v), 6) for t, v in zip(explanation.targets, explanation.condition[0].abs().mean(dim=0))
        }
    archive = save_attributions(folder, numbers, explanation.attributions)
    strongest = []
    for i, t in enumerate(explanation.targets):  # every column mostly follows its own noisy value: name the next one
        others = matrix[i].clone()
        if t in explanation.columns:
            others[explanation.columns.index(t)] = float("-inf")
        strongest.append(f"`{t}` ← `{explanation.columns[int(others.argmax())]}`")
    summary = (
        f"**{method}** at t = {step.timestep} over the first {rows} rows. Apart from its own noisy value, the column "
        f"of x_t that drives each generated column most: {', '.join(strongest)}."
    )
    return plot, summary, numbers, archive


@handle_errors
def commit(state):
    """When each column's decoded value settles along the trajectory of x0."""
    trace = load_trace(state)
    pipe = load_tabular_pipeline(state["model"])
    result = column_commit_steps(trace, pipe.preprocessor)
    plot = plot_column_commit_steps(result, str(new_output_path("column-commit", ".png")))
    means = result.fraction.float().mean(dim=0)
    numbers = {c: round(float(m), 4) for c, m in zip(result.columns, means)}
    order = result.order()
    summary = f"Earliest to settle: `{order[0]}`; last: `{order[-1]}` (mean commit step, as a fraction of the run)."
    return plot, summary, numbers


@handle_errors
def evaluate(state, progress=gr.Progress()):  # noqa: B008
    """Fidelity, utility and privacy of the generated rows against the real table the bundled model learned."""
    load_trace(state)
    if state["model"] != str(BUNDLED_MODEL):
        raise ValueError(
            "Quality metrics compare with the real table the model was trained on, which is known only for the "
            f"bundled model ({BUNDLED_DATASET})."
        )
    synthetic = pd.read_csv(state_file(state, "rows_path"))
    if len(synthetic) < MIN_EVALUATED_ROWS:
        raise ValueError(f"Quality metrics need at least {MIN_EVALUATED_ROWS} rows; generate more rows.")
    pipe = load_tabular_pipeline(state["model"])
    condition = pipe.preprocessor.condition
    progress(0, desc="Evaluating against the real table")
    folder = new_output_path("tabular-quality")
    with MODEL_LOCK:  # CPU-heavy: queued with the model runs
        report = evaluate_table(
            load_table(BUNDLED_DATASET),
            synthetic,
            target=None if condition is None else condition["name"],
            sdmetrics_privacy=False,  # SDMetrics' DCR protection takes tens of seconds; our own DCR is reported
            output_dir=folder,
            dataset_name=BUNDLED_DATASET,
        )
    return quality_results(report, folder)


# ---------------------------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------------------------
def build_tabular_tab() -> list[tuple]:
    """The Tabular tab's components and events (call inside a `gr.Tab`); returns its page-load events."""
    state = gr.State(None, time_to_live=FILE_TTL_SECONDS)
    model, model_md = model_box(ENV_MODEL, BUNDLED_LABEL, "TabularXAIPipeline", "tabular-model")
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            scheduler, steps, seed = sampling_controls("tabular-seed")
            rows = gr.Slider(1, MAX_ROWS, value=100, step=1, label="Rows")
            label = gr.Dropdown([RANDOM_LABEL], value=RANDOM_LABEL, label="Class (condition column)")
            run = gr.Button("Generate", variant="primary", elem_id="tabular-generate")
            info = gr.Markdown()
            rows_file = gr.File(label="Rows (.csv)", interactive=False)
        with gr.Column(scale=2):
            table = gr.Dataframe(label="Generated rows", elem_id="tabular-rows", max_height=360, interactive=False)
    step_slider, step_md = step_controls(
        "Trajectory: the predicted x0 of the first rows at each recorded step, decoded",
        "tabular-step",
        "tabular-step-caption",
    )
    preview = gr.Dataframe(label="Predicted x0", elem_id="tabular-x0", interactive=False)
    with gr.Tabs():
        with gr.Tab("Column attributions"):
            gr.Markdown(
                "Which columns of the noisy row x_t (and the class) drive each generated column of the predicted "
                f"x0 at the recorded step above, averaged over the first {MAX_EXPLAINED_ROWS} rows."
            )
            with gr.Accordion("Method verdicts (faithfulness benchmark)", open=False):
                gr.Markdown(verdicts_markdown("tabular"), elem_id="tabular-verdicts")
            with gr.Row():
                method = gr.Dropdown(list(METHODS), value=METHODS[0], label="Method")
                target = gr.Dropdown([ALL_COLUMNS], value=ALL_COLUMNS, label="Generated column")
            explain_btn, explain_outputs = attributions_panel("tabular", "Mean |attribution|")
        with gr.Tab("Commit steps"):
            commit_btn = gr.Button("When does each column settle?")
            commit_md = gr.Markdown()
            with gr.Row():
                commit_plot = gr.Image(label="Commit step per column", type="filepath", height=360)
                commit_json = gr.JSON(label="Mean commit fraction", max_height=300)
        quality_btn, quality_outputs = quality_tab(
            "tabular",
            "The generated rows against the real wine table (the bundled model's training data): SDMetrics column "
            "shapes and pair trends, detection AUC, train-synthetic-test-real, distance to the closest real record.",
        )

    model.change(
        model_info, model, [model_md, label], api_name="tabular_model_changed", api_visibility="private", **MODEL_RUN
    )
    run.click(
        generate,
        [model, scheduler, steps, seed, rows, label],
        [table, rows_file, state, step_slider, preview, step_md, target, info],
        api_name="tabular_generate",
        **MODEL_RUN,
    )
    step_slider.change(show_step, [state, step_slider], [preview, step_md], api_name="tabular_trajectory", **SCRUB)
    explain_btn.click(
        explain, [state, method, target, step_slider], explain_outputs, api_name="tabular_explain", **MODEL_RUN
    )
    commit_btn.click(commit, [state], [commit_plot, commit_md, commit_json], api_name="tabular_commit_steps")
    quality_btn.click(evaluate, [state], quality_outputs, api_name="tabular_evaluate", **MODEL_RUN)
    return [(model_info, model, [model_md, label], "tabular_model_info")]

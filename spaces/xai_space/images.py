"""The Images tab: generate with a `DiffusionXAIPipeline`, scrub the trajectory, attention, explanations, quality."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr
import numpy as np
import PIL.Image
import torch
from safetensors.torch import load_file

import diffusers_xai
from diffusers_xai import DiffusionXAIPipeline, Trace
from diffusers_xai.evaluation import evaluate_images
from diffusers_xai.explain import (
    EXPLAIN_METHODS,
    Explainer,
    analyze_trajectory,
    default_gradcam_layers,
    probabilities_to_maps,
    select_sample,
)
from diffusers_xai.modalities.image import load_digits_tensors
from diffusers_xai.viz import (
    image_tiles,
    save_attention_maps,
    save_commit_step_map,
    save_denoising_gif,
    save_faithfulness_curves,
    save_heatmap_overlay,
    save_sanity_check,
    save_trajectory_curves,
)

from .common import (
    FILE_TTL_SECONDS,
    MODEL_LOCK,
    SPACE_DIR,
    BundledModel,
    check_choice,
    check_int,
    guidance_inputs,
    handle_errors,
    load_trace,
    new_output_path,
    recorded_step,
    save_tensors,
    save_text,
    state_file,
    step_caption,
    step_slider_update,
    verdicts_markdown,
    with_scheduler,
    zip_folder,
)
from .layout import MODEL_RUN, SCRUB, model_box, sampling_controls, step_controls
from .runs import BatchLimits, generation_state, quality_results, traced_generation

BUNDLED_MODEL = SPACE_DIR / "digits-ddpm"
BUNDLED_LABEL = "digits-ddpm (bundled, offline)"
ENV_MODEL = "DIFFUSERS_XAI_MODEL"
MAX_BATCH = 16
# steps x batch per Generate (a 1000-step DDPM run of 4 images, or 250 steps of 16): ~1 min on the Space's CPU
MAX_WORK = 4000
BATCH = BatchLimits("Batch size", MAX_BATCH, MAX_WORK, "sample(s)")
# the class picker of class-conditional models (the bundled digits model is unconditional: only this choice)
UNCONDITIONAL = "unconditional"
MAX_GUIDANCE = 10.0
MAX_IMAGE_SIDE = 128
DISPLAY_CELL = 96  # pixels per image cell in the trajectory grids
# methods of the Explain section: attention and trajectory have sections of their own; shap_partition is left out
# because its first call JIT-compiles numba code for tens of seconds
EXCLUDED_METHODS = ("trajectory", "attention", "shap_partition")
# the GradCAM layer choice that keeps the library's image default: HiResCAM of the last up block
# (`diffusers_xai.explain.explain.IMAGE_INIT_DEFAULTS`); a block picked instead is explained with the same weighting
DEFAULT_CAM = "default (last up block)"


def explain_methods() -> list[str]:
    return [m for m in EXPLAIN_METHODS if m not in EXCLUDED_METHODS]


# ---------------------------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------------------------
BUNDLE = BundledModel(DiffusionXAIPipeline, BUNDLED_MODEL, BUNDLED_LABEL)
source_of = BUNDLE.source_of


def load_image_pipeline(model: str | None) -> DiffusionXAIPipeline:
    pipe = BUNDLE.load(model)
    if max(pipe.sample_shape[1:]) > MAX_IMAGE_SIDE:
        raise ValueError(
            f"{source_of(model)!r} generates {pipe.sample_shape[1]}x{pipe.sample_shape[2]} images; this Space accepts "
            f"at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}."
        )
    return pipe


def fresh_pipeline(model: str | None, scheduler: str) -> DiffusionXAIPipeline:
    return with_scheduler(load_image_pipeline(model), scheduler)


@handle_errors
def model_info(model: str | None) -> str:
    """Markdown summary of a model: image shape, parameters, noise schedule, attention layers."""
    pipe = load_image_pipeline(model)
    c, h, w = pipe.sample_shape
    cfg = pipe.scheduler.config
    layers = diffusers_xai.find_attention_modules(pipe.unet)
    summary = BUNDLE.summary(pipe, model, f"{w}x{h} images, {c} channel(s)")
    return f"{summary} ({cfg.beta_schedule}, {cfg.prediction_type}); {len(layers)} attention layer(s)."


@handle_errors
def class_choices(model: str | None):
    """The class picker and guidance slider for a model: its class names, or only "unconditional"."""
    pipe = load_image_pipeline(model)
    names = pipe.class_names or []
    return (
        gr.Dropdown(choices=[UNCONDITIONAL, *names], value=UNCONDITIONAL, interactive=bool(names)),
        gr.Slider(interactive=bool(names), value=1.0),
    )


def parse_class(pipe: DiffusionXAIPipeline, class_label, guidance_scale) -> dict:
    """The pipeline's `class_labels`/`guidance_scale` keywords for the picker's values (the pipeline checks them)."""
    guidance = guidance_inputs(guidance_scale, MAX_GUIDANCE)
    if class_label in (None, "", UNCONDITIONAL):
        return guidance
    return {"class_labels": str(class_label), **guidance}


def class_name(pipe: DiffusionXAIPipeline, label: int) -> str:
    """The picker's name of a class index (`"unconditional"` for the null class)."""
    return UNCONDITIONAL if label == pipe.null_class_label else pipe.class_names[label]


# ---------------------------------------------------------------------------------------------------------------
# trajectory grids: `viz.image_tiles` (numpy/PIL, no matplotlib) so that scrubbing the step slider stays instant
# ---------------------------------------------------------------------------------------------------------------
def to_unit(x: torch.Tensor) -> np.ndarray:
    """`[B, C, H, W]` model-space images in [-1, 1] → `[B, H, W, C]` floats in [0, 1]."""
    return ((x.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()


def upscale(image: np.ndarray, cell: int = DISPLAY_CELL) -> PIL.Image.Image:
    """`[H, W, C]` in [0, 1] → a PIL image enlarged by nearest neighbour to at least `cell` pixels a side."""
    return image_tiles(image[None], min_cell=cell, pad=0)


def tile(images: np.ndarray, cell: int = DISPLAY_CELL, pad: int = 2) -> PIL.Image.Image:
    """`[B, H, W, C]` in [0, 1] → one grid image (at most 4 columns), cells separated by `pad` white pixels."""
    return image_tiles(images, min_cell=cell, cols=min(len(images), 4), pad=pad, background=1.0).convert("RGB")


def trajectory_images(trace: Trace, position) -> tuple[PIL.Image.Image, PIL.Image.Image, str]:
    position, step, _ = recorded_step(trace, position)
    return tile(to_unit(step.latents)), tile(to_unit(step.pred_original_sample)), step_caption(trace, position)


def explanation_summary(method: str, numbers: dict) -> str:
    """One paragraph reading the numbers of an explanation (see `EXPLAIN_HELP`)."""
    text = f"**{method}** at t = {numbers['timestep']} (step {numbers['step_index'] + 1})"
    text += f", sample {numbers['sample_index']}"
    guidance = numbers.get("guidance_scale", 1.0)
    mix = f", guided at scale {guidance:g}: the guided prediction is explained" if guidance > 1 else ""
    text += f" (class {numbers['class_label']}{mix})." if "class_label" in numbers else "."
    faith = numbers.get("faithfulness")
    if faith and faith.get("deletion_gain") is not None:
        text += (
            f" Faithfulness: deletion AUC {faith['deletion_auc']:.3f} vs {faith['random_deletion_auc']:.3f} for "
            f"random maps (gain {faith['deletion_gain']:+.3f}), insertion AUC {faith['insertion_auc']:.3f} vs "
            f"{faith['random_insertion_auc']:.3f} (gain {faith['insertion_gain']:+.3f}); positive gains: more "
            "faithful than random."
        )
    elif faith:
        text += " Faithfulness: undefined here (the target does not change between x_t and the baseline)."
    sanity = numbers.get("sanity_check")
    if sanity and sanity.get("ssim") is not None:
        text += (
            f" Sanity check: SSIM {sanity['ssim']:.3f}, Spearman {sanity['spearman']:.3f} between the maps of the "
            "trained and a re-initialised model (it passes when both are far below 1)."
        )
    return text


def trajectory_summary(numbers: dict) -> str:
    distances = numbers["x0_distance_to_final"]
    return (
        f"On average a pixel's predicted x0 settles (stays within {numbers['eps']} of its final value) after "
        f"{100 * numbers['mean_commit_fraction']:.0f}% of the steps. The RMS distance of the predicted x0 to the "
        f"final sample falls from {distances[0]:.3f} at the first recorded step to {distances[-1]:.3f}."
    )


# ---------------------------------------------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------------------------------------------
@handle_errors
def generate(
    model,
    scheduler,
    num_inference_steps,
    seed,
    batch_size,
    class_label=UNCONDITIONAL,
    guidance_scale=1.0,
    progress=gr.Progress(track_tqdm=True),  # noqa: B008 (Gradio finds its progress tracker by this default)
):
    """Sample a batch with a trace (x_t, predicted x0, attention), save the trace, show the last recorded step.
    Class-conditional models sample the picked class with classifier-free guidance."""

    def call_kwargs(pipe, n: int) -> dict:
        return {"batch_size": n, "output_type": "np", **parse_class(pipe, class_label, guidance_scale)}

    args = (load_image_pipeline, model, scheduler, num_inference_steps, seed, batch_size, progress, BATCH)
    run = traced_generation(*args, call_kwargs, attention=True)
    pipe, out, trace = run.pipe, run.output, run.output.trace
    samples_path = save_tensors(
        {"images": torch.from_numpy(out.images).permute(0, 3, 1, 2).contiguous()},  # [B, C, H, W] in [0, 1]
        new_output_path("samples", ".safetensors"),
    )
    state = generation_state(
        trace,
        "trace",
        source_of(model),
        scheduler,
        run.steps,
        samples_path=str(samples_path),
        seed=run.seed,
        batch_size=run.count,
        # the class of every sample (the null class when none was picked), so Explain explains what was sampled (the
        # trace records the guidance scale: a guided run is explained as the guided mix)
        class_labels=out.class_labels.tolist() if out.class_labels is not None else None,
    )
    last = len(trace) - 1
    x_t, x0, caption = trajectory_images(trace, last)
    layers = trace.attention_layers
    cam_layers = [DEFAULT_CAM, *default_gradcam_layers(pipe.unet)]
    return (
        [(upscale(im, 128), f"sample {i}") for i, im in enumerate(out.images)],
        state,
        state["trace_path"],
        step_slider_update(trace, last),
        x_t,
        x0,
        caption,
        gr.Dropdown(choices=layers, value=layers[0] if layers else None),
        gr.Dropdown(choices=list(range(run.count)), value=0),
        gr.Dropdown(choices=cam_layers, value=DEFAULT_CAM),
        run.info,
    )


@handle_errors
def show_step(state, position):
    """x_t and the predicted x0 of every sample at one recorded step."""
    return trajectory_images(load_trace(state), position)


@handle_errors
def show_attention(state, layer, sample, position, query_row, query_col):
    """One layer's self-attention for one sample at one recorded step (over x0), and all layers over the steps."""
    trace = load_trace(state)
    if not trace.attention_layers:
        raise ValueError("This model has no attention layers: there are no attention maps to show.")
    if layer not in trace.attention_layers:
        raise ValueError(f"Unknown attention layer {layer!r}; recorded layers: {trace.attention_layers}.")
    position, step, sample = recorded_step(trace, position, sample)
    H, W = step.latents.shape[-2:]
    row = check_int("Query row", -1 if query_row is None else query_row, -1, H - 1)
    col = check_int("Query column", -1 if query_col is None else query_col, -1, W - 1)
    query = None if row < 0 or col < 0 else (row, col)  # -1: the mean over every query
    if layer not in step.attentions:
        raise ValueError(
            f"Layer {layer!r} was not recorded at step {step.step_index} (the trace hit its memory budget)."
        )
    maps = probabilities_to_maps(step.attentions[layer][sample : sample + 1], "self", (H, W), layer, query)
    amap = maps.mean(dim=1)[0, 0]  # heads averaged → [h, w]
    amap = torch.nn.functional.interpolate(amap[None, None], size=(H, W), mode="nearest")[0, 0]
    what = (
        "the attention each position receives (mean over queries)" if query is None else f"where pixel {query} looks"
    )
    title = f"{layer}, t={step.timestep}"
    x0 = torch.from_numpy(to_unit(step.pred_original_sample[sample : sample + 1])[0]).permute(2, 0, 1)  # [C, H, W]
    overlay = save_heatmap_overlay(x0, amap, new_output_path("attention", ".png"), title=title, signed=False)
    overview = save_attention_maps(trace, new_output_path("attention-layers", ".png"), sample_index=sample)
    return str(overlay), str(overview), f"Sample {sample}, `{layer}`: {what}. " + step_caption(trace, position)


@handle_errors
def analyze(state, sample, progress=gr.Progress()):  # noqa: B008
    """Trajectory analysis of one sample: distances to the final sample, commit step of every pixel, a GIF."""
    trace = load_trace(state)
    _, _, sample = recorded_step(trace, 0, sample)
    if len(trace) < 2:
        raise ValueError("Trajectory analysis needs at least two recorded steps: generate with Steps >= 2.")
    progress(0, desc="Analysing the trajectory")
    one = select_sample(trace, sample)
    scheduler = fresh_pipeline(state["model"], state["scheduler"]).scheduler
    scheduler.set_timesteps(state["num_inference_steps"])
    analysis = analyze_trajectory(one, scheduler)
    final = one.steps[-1].pred_original_sample
    curves = save_trajectory_curves(analysis, new_output_path("trajectory-curves", ".png"))
    commit = save_commit_step_map(analysis, new_output_path("commit-steps", ".png"), image=final)
    gif = save_denoising_gif(one, new_output_path("denoising", ".gif"))
    numbers = analysis.summary(0)
    return str(curves), str(commit), str(gif), trajectory_summary(numbers), numbers


@handle_errors
def evaluate(state, progress=gr.Progress()):  # noqa: B008
    """Compare the generated batch with scikit-learn's digits in the digits-CNN feature space."""
    load_trace(state)  # same "generate first" / "expired" messages as the other sections
    fake = load_file(state_file(state, "samples_path"))["images"]  # [B, C, H, W] in [0, 1]
    c, h, w = fake.shape[1:]
    if c != 1 or h != w:
        raise ValueError(
            f"Quality metrics compare with scikit-learn's 1-channel square digits; this model makes {c}x{h}x{w} "
            "images."
        )
    if fake.shape[0] < 2:
        raise ValueError("Quality metrics need at least 2 generated images: generate with Batch size >= 2.")
    progress(0, desc="Evaluating against the digits")
    real, _ = load_digits_tensors(h)  # [-1, 1]
    folder = new_output_path("quality")
    with MODEL_LOCK:  # CPU-heavy: queued with the model runs
        report = evaluate_images(
            real,
            fake * 2 - 1,
            value_range=(-1.0, 1.0),
            output_dir=folder,
            dataset_name="sklearn-digits",
            nearest_k=min(5, fake.shape[0] - 1),  # PRDC's k-NN balls need more than k samples per set
            progress=False,
        )
    return quality_results(report, folder, plots=("nearest_neighbours", "prdc", "class_histogram"))


@handle_errors
def explain(
    state,
    method,
    layer,
    sample,
    position,
    faithfulness,
    sanity_check,
    progress=gr.Progress(track_tqdm=True),  # noqa: B008
):
    """Explain one sample at one recorded step: map overlay, faithfulness curves, sanity check, numbers, a zip."""
    check_choice("explanation method", method, explain_methods())
    trace = load_trace(state)
    position, step, sample = recorded_step(trace, position, sample)
    pipe = fresh_pipeline(state["model"], state["scheduler"])
    method_kwargs = {}
    if method == "gradcam" and layer not in (None, "", DEFAULT_CAM):
        method_kwargs["gradcam"] = {"init": {"layer": layer}}
    explainer = Explainer(  # the guidance the trace records: a guided run's mix is explained
        pipe,
        methods=[method],
        faithfulness=bool(faithfulness),
        sanity_check=bool(sanity_check),
        method_kwargs=method_kwargs,
    )
    progress(0, desc=f"Explaining with {method}")
    labels = state.get("class_labels")  # a class-conditional model is explained with the sample's class
    class_labels = torch.tensor(labels[sample : sample + 1]) if labels is not None else None
    with MODEL_LOCK:
        report = explainer.explain(trace, sample_index=sample, timesteps=[step.timestep], class_labels=class_labels)
    result = report.results[method]
    numbers = report.summary()["methods"][method]
    numbers.update(sample_index=sample, timestep=int(step.timestep), step_index=int(step.step_index))
    if labels is not None:
        numbers.update(class_label=class_name(pipe, labels[sample]), guidance_scale=report.guidance_scale)
    # only the three plots shown here (`save_explanation_report` would also draw per-step grids and trajectory strips)
    folder = new_output_path(f"explanation-{method}")
    folder.mkdir()
    overlay = save_heatmap_overlay(
        report.image, result.maps[0, 0, 0], folder / f"{method}_overlay.png", title=f"{method}, t={step.timestep}"
    )
    curves = sanity_plot = None
    if method in report.faithfulness:
        curves = save_faithfulness_curves(report.faithfulness[method][0], folder / f"{method}_faithfulness.png")
    if method in report.sanity:
        sanity_plot = save_sanity_check(report.sanity[method], folder / f"{method}_sanity.png")
    save_text(json.dumps(numbers, indent=2), folder / "explanation.json")
    save_tensors({"maps": result.maps.float().contiguous()}, folder / "maps.safetensors")  # no pickle
    archive = zip_folder(folder)  # the folder is only handed out once complete, as one renamed zip
    return (
        str(overlay),
        str(curves) if curves else None,
        str(sanity_plot) if sanity_plot else None,
        explanation_summary(method, numbers),
        numbers,
        str(archive),
    )


# ---------------------------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------------------------
EXPLAIN_HELP = """Attributions of the denoiser's predicted x0 (summed) with respect to x_t at the recorded step above.
**Faithfulness**: deletion/insertion AUCs of the map against random maps (a faithful map has a *lower* deletion AUC
and a *higher* insertion AUC: positive gains). **Sanity check** (Adebayo et al., 2018): similarity of the maps of
the trained and a re-initialised model; SSIM and Spearman far below 1 mean the map depends on what was learned."""


def build_images_tab() -> list[tuple]:
    """The Images tab's components and events (call inside a `gr.Tab`); returns its page-load events."""
    state = gr.State(None, time_to_live=FILE_TTL_SECONDS)
    model, model_md = model_box(ENV_MODEL, BUNDLED_LABEL, "DiffusionXAIPipeline", "model")
    gen = _generate_section()
    step_slider, step_md = step_controls(
        "Trajectory: x_t and the predicted x0 at each recorded step", "step-slider", "step-caption"
    )
    with gr.Row():
        xt_image = gr.Image(label="x_t", type="pil", format="png", elem_id="xt-image", interactive=False)
        x0_image = gr.Image(label="predicted x0", type="pil", format="png", elem_id="x0-image", interactive=False)
    sample = gr.Dropdown([0], value=0, label="Sample (for the sections below)", elem_id="sample")
    with gr.Tabs():
        attn, expl, traj, quality = _attention_tab(), _explain_tab(), _trajectory_tab(), _quality_tab()

    model.change(model_info, model, model_md, api_name="model_changed", api_visibility="private", **MODEL_RUN)
    model.change(
        class_choices, model, [gen.class_label, gen.guidance], api_name="classes_changed", api_visibility="private"
    )
    gen.run.click(
        generate,
        [model, gen.scheduler, gen.steps, gen.seed, gen.batch, gen.class_label, gen.guidance],
        [gen.gallery, state, gen.trace_file, step_slider, xt_image, x0_image, step_md]
        + [attn.layer, sample, expl.cam_layer, gen.info],
        api_name="generate",
        **MODEL_RUN,
    )
    step_slider.change(show_step, [state, step_slider], [xt_image, x0_image, step_md], api_name="trajectory", **SCRUB)
    _wire_sections(state, sample, step_slider, attn, expl, traj, quality)
    return [
        (model_info, model, model_md, "model_info"),
        (class_choices, model, [gen.class_label, gen.guidance], "class_choices"),
    ]


def _generate_section() -> SimpleNamespace:
    """The sampling controls, the Generate button and the gallery."""
    with gr.Row():
        with gr.Column(scale=1, min_width=260):
            scheduler, steps, seed = sampling_controls("seed")
            batch = gr.Slider(1, MAX_BATCH, value=8, step=1, label="Batch size")
            class_label = gr.Dropdown(
                [UNCONDITIONAL], value=UNCONDITIONAL, label="Class (class-conditional models)", elem_id="class-label"
            )
            guidance = gr.Slider(1.0, MAX_GUIDANCE, value=1.0, step=0.5, label="Guidance scale", elem_id="guidance")
            run = gr.Button("Generate", variant="primary", elem_id="generate")
            info = gr.Markdown(elem_id="generate-info")
            trace_file = gr.File(label="Trace (.safetensors)", interactive=False, elem_id="trace-file")
        with gr.Column(scale=2):
            gallery = gr.Gallery(
                label="Samples", columns=4, height=420, format="png", object_fit="contain", elem_id="gallery"
            )
    return SimpleNamespace(**locals())


def _attention_tab() -> SimpleNamespace:
    with gr.Tab("Attention", id="attention"):
        with gr.Row():
            layer = gr.Dropdown([], label="Attention layer", elem_id="attention-layer")
            query_row = gr.Number(-1, precision=0, label="Query row (-1: mean over queries)")
            query_col = gr.Number(-1, precision=0, label="Query column")
        button = gr.Button("Show attention", elem_id="show-attention")
        summary = gr.Markdown()
        with gr.Row():
            image = gr.Image(label="Attention at this step", type="filepath", elem_id="attention-image", height=300)
            overview = gr.Image(
                label="Every layer over the steps", type="filepath", elem_id="attention-all", height=300
            )
    return SimpleNamespace(**locals())


def _explain_tab() -> SimpleNamespace:
    with gr.Tab("Explain", id="explain"):
        methods = explain_methods()
        gr.Markdown(EXPLAIN_HELP)
        with gr.Accordion("Method verdicts (faithfulness benchmark)", open=False):
            gr.Markdown(verdicts_markdown("image"), elem_id="image-verdicts")
        with gr.Row():
            method = gr.Dropdown(methods, value="gradcam", label="Method", elem_id="method")
            cam_layer = gr.Dropdown([DEFAULT_CAM], value=DEFAULT_CAM, label="GradCAM layer (HiResCAM weighting)")
            faithful = gr.Checkbox(True, label="Faithfulness (deletion/insertion)")
            sanity = gr.Checkbox(True, label="Sanity check (model randomisation)")
        button = gr.Button("Explain", elem_id="explain-button")
        summary = gr.Markdown(elem_id="explain-summary")
        with gr.Row():
            image = gr.Image(label="Map", type="filepath", elem_id="explain-image", height=260)
            curves = gr.Image(label="Faithfulness curves", type="filepath", elem_id="faithfulness-image", height=260)
        with gr.Row():
            sanity_image = gr.Image(label="Sanity check", type="filepath", elem_id="sanity-image", height=260)
            with gr.Column():
                numbers = gr.JSON(label="Numbers", elem_id="explain-numbers", max_height=200)
                archive = gr.File(label="Explanation (PNGs, JSON, maps)", interactive=False)
    return SimpleNamespace(**locals())


def _trajectory_tab() -> SimpleNamespace:
    with gr.Tab("Trajectory analysis", id="trajectory"):
        gr.Markdown(
            "How the predicted x0 converges to the final sample, and from which step each pixel stays within a "
            "tolerance of its final value (its *commit step*)."
        )
        button = gr.Button("Analyse trajectory", elem_id="analyze")
        summary = gr.Markdown(elem_id="trajectory-summary")
        curves = gr.Image(label="Trajectory curves", type="filepath", elem_id="trajectory-curves", height=260)
        with gr.Row():
            commit = gr.Image(label="Commit steps", type="filepath", elem_id="commit-steps", height=260)
            gif = gr.Image(label="Denoising (predicted x0)", type="filepath", elem_id="denoising-gif", height=260)
        numbers = gr.JSON(label="Numbers", max_height=200)
    return SimpleNamespace(**locals())


def _quality_tab() -> SimpleNamespace:
    with gr.Tab("Quality", id="quality"):
        gr.Markdown(
            "The generated batch against the 1,797 digits of scikit-learn (the training data of the bundled "
            "model) in the feature space of the package's digits CNN: FID/KID, precision/recall/density/"
            "coverage, diversity, class coverage and memorisation. With at most 16 samples FID is biased; "
            "KID and the nearest neighbours are the numbers to read."
        )
        button = gr.Button("Evaluate", elem_id="evaluate")
        summary = gr.Markdown(elem_id="quality-summary")
        with gr.Row():
            nn_plot = gr.Image(label="Nearest training images", type="filepath", elem_id="nn-plot", height=300)
            with gr.Column():
                prdc_plot = gr.Image(label="Precision/recall/density/coverage", type="filepath", height=140)
                hist_plot = gr.Image(label="Classes (digits CNN)", type="filepath", height=140)
        with gr.Row():
            report = gr.JSON(label="Report", max_height=200)
            archive = gr.File(label="Report (JSON, PNGs)", interactive=False)
    return SimpleNamespace(**locals())


def _wire_sections(state, sample, step_slider, attn, expl, traj, quality) -> None:
    """The events of the sections below the trajectory (attention, explain, quality, trajectory analysis)."""
    attn.button.click(
        show_attention,
        [state, attn.layer, sample, step_slider, attn.query_row, attn.query_col],
        [attn.image, attn.overview, attn.summary],
        api_name="attention",
        concurrency_limit=2,
    )
    expl.button.click(
        explain,
        [state, expl.method, expl.cam_layer, sample, step_slider, expl.faithful, expl.sanity],
        [expl.image, expl.curves, expl.sanity_image, expl.summary, expl.numbers, expl.archive],
        api_name="explain",
        **MODEL_RUN,
    )
    quality.button.click(
        evaluate,
        [state],
        [quality.summary, quality.nn_plot, quality.prdc_plot, quality.hist_plot, quality.report, quality.archive],
        api_name="evaluate",
        **MODEL_RUN,
    )
    traj.button.click(
        analyze,
        [state, sample],
        [traj.curves, traj.commit, traj.gif, traj.summary, traj.numbers],
        api_name="analyze_trajectory",
        concurrency_limit=2,
    )

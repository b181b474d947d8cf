"""The image modality: HF image datasets → `[B, C, H, W]` tensors in [-1, 1], a `UNet2DModel`, a pipeline."""

from __future__ import annotations

import io
import logging
import os

import numpy as np
import PIL.Image
import torch
from diffusers import UNet2DModel

from ..base import Modality, SampleBatch
from ..hf_datasets import load_hf_dataset, to_stream
from ..registry import register_modality
from ..sampling import ddim_copy, sample_in_batches, sample_per_generator, sampling_steps
from .files import check_image_files
from .labels import ImageLabels, ImageOptions, fit_labels
from .pipeline_diffusion_xai import DiffusionXAIPipeline

__all__ = ["BUILTIN_IMAGE_DATASETS", "ImageModality"]

logger = logging.getLogger(__name__)

# datasets that ship with a dependency, usable with no files and no network
BUILTIN_IMAGE_DATASETS = ("sklearn-digits",)


@register_modality
class ImageModality(Modality):
    """
    Unconditional image generation with a [`UNet2DModel`], saved as a [`DiffusionXAIPipeline`].

    Reads `image_column` (PIL images or file paths) from `dataset_name` / `train_data_dir` (see
    [`load_hf_dataset`]) or the built-in `sklearn-digits`; converts to `channels` (1 → "L", 3 → "RGB"), resizes
    the short side to `resolution`, crops (center or random), optionally flips, and scales to [-1, 1]. (torchvision
    would do these transforms, but it is not a dependency of this package, so they are a few lines of PIL here.)
    """

    name = "image"
    pipeline_class = DiffusionXAIPipeline
    data_noun = "images"
    pipeline_tag = "unconditional-image-generation"
    task_categories = ("unconditional-image-generation",)
    denoiser_prefixes = ("UNet2D", "UVit", "Transformer2D")
    supports_pretrained = True  # `pretrained_model_name_or_path`, `lora_rank` (`pretrained.py`; `training.finetune`)
    options_class = ImageOptions

    # ---- before any data is read ----
    def validate_config(self, config) -> None:
        if config.channels not in (1, 3):
            raise ValueError(f"`channels` must be 1 (grayscale) or 3 (RGB), got {config.channels}.")
        if config.resolution < 8:
            raise ValueError(f"`resolution` must be >= 8, got {config.resolution}.")
        if config.pretrained_model_name_or_path is not None:
            from .pretrained import check_pretrained_fits, load_pretrained_configs

            source = config.pretrained_model_name_or_path
            unet_config, _ = load_pretrained_configs(source)
            check_pretrained_fits(unet_config, config.channels, config.resolution, source)
            return
        if config.model_config_name_or_path is not None:
            unet_config = self._load_unet_config(config.model_config_name_or_path)
            for key in ("in_channels", "out_channels"):
                if unet_config.get(key, 3) != config.channels:
                    raise ValueError(
                        f"The UNet config {config.model_config_name_or_path!r} has {key}={unet_config.get(key, 3)} "
                        f"but the data has channels={config.channels}; set `channels: {unet_config.get(key, 3)}` or "
                        f"edit {key} in the model config."
                    )
            return
        levels = len(config.block_out_channels)
        down, up = self._block_types(config)
        if len(down) != levels or len(up) != levels:
            raise ValueError(
                f"`down_block_types` ({len(down)}) and `up_block_types` ({len(up)}) need one entry per "
                f"`block_out_channels` level ({levels})."
            )
        for ch in config.block_out_channels:
            if ch % config.norm_num_groups:
                raise ValueError(
                    f"`norm_num_groups` ({config.norm_num_groups}) must divide every `block_out_channels` entry, "
                    f"got {list(config.block_out_channels)}."
                )
        if config.resolution % 2 ** (levels - 1):
            raise ValueError(
                f"`resolution` ({config.resolution}) must be divisible by 2**(levels - 1) = {2 ** (levels - 1)} "
                f"for a UNet with {levels} levels."
            )

    @staticmethod
    def _load_unet_config(path: str) -> dict:
        if not os.path.exists(path):
            raise ValueError(
                f"`model_config_name_or_path` {path!r} does not exist (a UNet2DModel config.json or folder)."
            )
        if os.path.isfile(path):
            import json

            with open(path, encoding="utf-8") as f:
                return json.load(f)
        return dict(UNet2DModel.load_config(path))

    @staticmethod
    def _block_types(config) -> tuple[tuple[str, ...], tuple[str, ...]]:
        levels = len(config.block_out_channels)
        down = config.down_block_types or ("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",)
        if config.up_block_types:
            up = config.up_block_types
        else:
            up = tuple(b.replace("Down", "Up") for b in reversed(down))
        return tuple(down), tuple(up)

    # ---- data ----
    def load_dataset(self, config):
        import datasets

        if config.dataset_name in BUILTIN_IMAGE_DATASETS:
            from .data import load_digits_dataset

            return load_digits_dataset(resolution=config.resolution)
        dataset = load_hf_dataset(config)
        column = config.image_column
        if column not in dataset.column_names:
            import difflib

            close = difflib.get_close_matches(column, dataset.column_names, n=1, cutoff=0.4)
            hint = f" Did you mean `image_column: {close[0]}`?" if close else ""
            raise ValueError(
                f"Image column {column!r} not found in the dataset; its columns are {dataset.column_names}.{hint}"
            )
        feature = dataset.features[column]
        if len(dataset) == 0:
            return dataset  # the trainer reports the empty dataset
        if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
            dataset = dataset.cast_column(column, datasets.Image())  # file paths, e.g. from a CSV
        elif not isinstance(feature, datasets.Image):
            raise TypeError(
                f"Column {column!r} holds {feature!r}, not images; it must be a `datasets.Image()` feature or file "
                "paths (use `dataset.cast_column(column, datasets.Image())`)."
            )
        check_image_files(dataset, column)
        return dataset

    def load_streaming_dataset(self, config):
        import datasets

        if config.dataset_name in BUILTIN_IMAGE_DATASETS:
            # 1,797 8x8 digits are built in memory anyway; streamed so the loop is the one large data takes
            return to_stream(self.load_dataset(config))
        stream = load_hf_dataset(config, streaming=True)
        if stream.features is None:  # a CSV/JSON of file paths: `datasets` infers the features from its first rows
            stream = stream._resolve_features()
        column = config.image_column
        if column not in stream.column_names:
            raise ValueError(
                f"Image column {column!r} not found in the dataset; its columns are {stream.column_names}."
            )
        feature = stream.features[column]
        if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
            return stream.cast_column(column, datasets.Image())  # decoded lazily, row by row
        if not isinstance(feature, datasets.Image):
            raise TypeError(
                f"Column {column!r} holds {feature!r}, not images; it must be a `datasets.Image()` feature or file "
                "paths."
            )
        return stream

    def fit_preprocessor(self, dataset, config) -> ImageLabels | None:
        """The class labels to condition on ([`ImageLabels`]), or `None` for an unconditional model."""
        if len(dataset) and config.dataset_name not in BUILTIN_IMAGE_DATASETS:
            mode = dataset[0][config.image_column].mode
            target = "L" if config.channels == 1 else "RGB"
            if mode != target:
                logger.warning(f"Images are mode {mode!r}; converting to {target!r} for channels={config.channels}.")
        labels = fit_labels(dataset, config)
        if config.pretrained_model_name_or_path is not None:
            labels = self._labels_for_pretrained(labels, config)
        return labels

    @staticmethod
    def _labels_for_pretrained(labels: ImageLabels | None, config) -> ImageLabels | None:
        from .pretrained import load_pretrained_configs

        unet_config, _ = load_pretrained_configs(config.pretrained_model_name_or_path)
        embeds = unet_config.get("num_class_embeds")
        if embeds is None and labels is not None and config.modality_options.label_column == "auto":
            logger.info("The pretrained UNet is unconditional: fine-tuning it unconditionally (labels not used).")
            return None
        have = None if labels is None else labels.num_classes + 1
        if embeds != have:
            raise ValueError(
                f"The pretrained UNet has num_class_embeds={embeds} but the data gives "
                f"{'no labels' if labels is None else f'{labels.num_classes} classes (+1 null class = {have})'}; "
                "fine-tune on data with the same classes, or set `label_column: none` with an unconditional model."
            )
        return labels

    def to_tensors(self, examples: dict[str, list], preprocessor, config) -> dict[str, torch.Tensor]:
        mode = "L" if config.channels == 1 else "RGB"
        size = config.resolution
        out = []
        for image in examples[config.image_column]:
            if image.mode != mode:
                image = image.convert(mode)
            w, h = image.size
            if min(w, h) != size:
                scale = size / min(w, h)
                image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), PIL.Image.BILINEAR)
                w, h = image.size
            if (w, h) != (size, size):
                if config.center_crop:
                    left, top = (w - size) // 2, (h - size) // 2
                else:
                    left = int(torch.randint(0, w - size + 1, ()))
                    top = int(torch.randint(0, h - size + 1, ()))
                image = image.crop((left, top, left + size, top + size))
            if config.random_flip and torch.rand(()) < 0.5:
                image = image.transpose(PIL.Image.FLIP_LEFT_RIGHT)
            array = np.asarray(image, dtype=np.float32).reshape(size, size, -1)
            out.append(torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0)
        batch = {"x0": torch.stack(out)}
        if isinstance(preprocessor, ImageLabels):
            batch["class_labels"] = preprocessor.encode(examples[preprocessor.column])  # dropout: in the loss
        return batch

    # ---- model and pipeline ----
    def build_model(self, config, preprocessor) -> UNet2DModel:
        if config.pretrained_model_name_or_path is not None:
            from .pretrained import load_pretrained_unet

            return load_pretrained_unet(config.pretrained_model_name_or_path)
        if config.model_config_name_or_path is not None:
            unet_config = self._load_unet_config(config.model_config_name_or_path)
            if unet_config.get("sample_size") != config.resolution:
                logger.warning(
                    f"UNet config sample_size={unet_config.get('sample_size')} differs from resolution="
                    f"{config.resolution}; using resolution."
                )
            unet_config["sample_size"] = config.resolution
            if isinstance(preprocessor, ImageLabels):
                unet_config["num_class_embeds"] = preprocessor.num_classes + 1
            return UNet2DModel.from_config(unet_config)
        down, up = self._block_types(config)
        return UNet2DModel(
            sample_size=config.resolution,
            in_channels=config.channels,
            out_channels=config.channels,
            layers_per_block=config.layers_per_block,
            block_out_channels=tuple(config.block_out_channels),
            down_block_types=down,
            up_block_types=up,
            attention_head_dim=config.attention_head_dim,
            norm_num_groups=config.norm_num_groups,
            dropout=config.dropout,
            # K classes + the null class K (label dropout), see `labels.py`
            num_class_embeds=preprocessor.num_classes + 1 if isinstance(preprocessor, ImageLabels) else None,
        )

    def build_pipeline(self, model, scheduler, preprocessor) -> DiffusionXAIPipeline:
        names = preprocessor.names if isinstance(preprocessor, ImageLabels) else None
        return DiffusionXAIPipeline(unet=model, scheduler=scheduler, class_names=names)

    def log_validation(self, pipeline, step: int, config, accelerator) -> str:
        """DDIM-sample `validation_batch_size` images from a fixed seed; save `samples/step_N.png`; log them."""
        generator = torch.Generator("cpu").manual_seed(config.seed or 0)
        images = ddim_copy(pipeline)(
            batch_size=config.validation_batch_size,
            generator=generator,
            num_inference_steps=sampling_steps(config),
            output_type="np",
        ).images
        path = os.path.join(config.output_dir, "samples", f"step_{step:07d}.png")
        from ...viz.samples import save_image_tiles  # viz imports the explainers: on use only

        save_image_tiles(images, path)
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images({"samples": images}, step=step, dataformats="NHWC")
        return path

    # ---- end of training ----
    @property
    def explain_methods(self) -> tuple[str, ...]:
        # read from the explainers on use: importing them (captum) at start-up would cost every training process ~1.5 s
        from ...explain.explain import EXPLAIN_METHODS

        return EXPLAIN_METHODS

    always_explain_methods = ("trajectory",)

    def reference_images(self, config, max_samples: int) -> torch.Tensor:
        """Up to `max_samples` training images (a seeded subset) as `[N, C, H, W]` in [0, 1], center-cropped."""
        dataset = self.reference_dataset(config, max_samples)
        view = config.replace(center_crop=True, random_flip=False)
        chunks = [self.to_tensors(dataset[i : i + 256], None, view)["x0"] for i in range(0, len(dataset), 256)]
        return (torch.cat(chunks) + 1.0) / 2.0

    def evaluate(self, pipeline, config, num_samples: int, output_dir: str):
        """FID/KID/IS, PRDC, diversity and memorisation (digits-CNN features) of DDIM samples vs training images; a
        class-conditional model is scored on samples of its classes in turn, see [`score_generated_images`]."""
        ddim = ddim_copy(pipeline)
        steps = sampling_steps(config)

        def draw(conditional: bool) -> torch.Tensor:
            drawn = 0

            def sample(n: int, generator: torch.Generator) -> torch.Tensor:
                nonlocal drawn
                labels = cycling_class_labels(pipeline.num_classes, drawn, n) if conditional else None
                drawn += n
                out = ddim(
                    batch_size=n, generator=generator, num_inference_steps=steps, class_labels=labels, output_type="pt"
                )
                return out.images.cpu()

            return torch.cat(sample_in_batches(sample, num_samples, config))

        real = self.reference_images(config, max(num_samples, 2000))
        report = score_generated_images(
            pipeline,
            real,
            draw,
            output_dir=output_dir,
            dataset_name=config.dataset_name or config.train_data_dir,
            seed=config.seed or 0,
            value_range=(0.0, 1.0),
        )
        if pipeline.num_classes is not None and config.dataset_name in BUILTIN_IMAGE_DATASETS:
            per_class = max(1, num_samples // pipeline.num_classes)
            add_class_accuracy(report, pipeline, per_class=per_class, seed=config.seed)
        return report

    def score(self, real, samples, options: dict):
        """FID/KID/IS, PRDC, diversity and memorisation in the `feature` space (`digits-cnn`, `inception`, or an
        Inception feature dimension)."""
        from ...evaluation import evaluate_images

        feature = options["feature"]
        return evaluate_images(
            real,
            samples,
            feature=int(feature) if str(feature).isdigit() else feature,
            **self.report_options(options, "device", "progress"),
        )

    def explain(self, pipeline, config, methods: tuple[str, ...], output_dir: str) -> dict:
        """Explain sample 0 of a traced DDIM generation with every method ([`explain_generation`]); the card shows
        each method's overlay and step grid, the trajectory, the faithfulness curves and the sanity check."""
        from ...capture import TraceConfig
        from ..explanations import explain_generation

        ddim = ddim_copy(pipeline)
        methods = list(methods)
        has_attention = any(type(m).__name__ == "Attention" for m in ddim.unet.modules())
        if "attention" in methods and not has_attention:
            logger.warning("The UNet has no attention layers: the card has no attention maps.")
            methods.remove("attention")
        generation = ddim(
            batch_size=min(config.validation_batch_size, 16),
            generator=torch.Generator("cpu").manual_seed(config.seed or 0),
            num_inference_steps=sampling_steps(config),
            trace=TraceConfig(attention="attention" in methods),
            output_type="pt",
        )
        grid = generation.images.permute(0, 2, 3, 1).numpy()
        from ...viz.samples import save_image_tiles  # viz imports the explainers: on use only

        samples = save_image_tiles(grid, os.path.join(output_dir, "samples.png"))
        summary = explain_generation(ddim, generation, output_dir, methods=methods, sample_index=0, gif=False)
        return card_fields_from_summary(summary, output_dir, samples)

    # ---- sharded datasets ----
    parquet_row_group_size = 100

    def samples_from_dataset(self, dataset) -> list:
        """The generated images (PIL) of a dataset written by [`sample_batch`], as [`score`] takes an image folder."""
        return list(dataset["image"])

    def sample_batch(self, pipeline, generators, num_inference_steps: int, trace, **conditioning) -> SampleBatch:
        """Images from a [`DiffusionXAIPipeline`], stored as PNG bytes in a `datasets.Image()` column; with
        `class_labels`, their classes in a `datasets.ClassLabel` column `label` (named as the pipeline names them)."""
        import datasets

        out = sample_per_generator(pipeline, generators, num_inference_steps, trace, output_type="pil", **conditioning)
        columns = {"image": [{"bytes": png_bytes(img), "path": None} for img in out.images]}
        features = {"image": datasets.Image()}
        if "class_labels" in conditioning:
            names = pipeline.class_names or [str(k) for k in range(pipeline.num_classes)]
            columns["label"], features["label"] = out.class_labels.tolist(), datasets.ClassLabel(names=names)
        return SampleBatch(columns, datasets.Features(features), out.trace)


# classifier-free guidance scale at which conditional samples are scored (the target: >= 90% at 3)
EVAL_GUIDANCE_SCALE = 3.0


def cycling_class_labels(num_classes: int, start: int, n: int) -> torch.Tensor:
    """Labels of samples `start .. start + n - 1` of an evaluation draw: sample `i` is of class `i mod num_classes`."""
    return (start + torch.arange(n)) % num_classes


def conditional_samples_name(num_classes: int) -> str:
    """What the primary metrics of a class-conditional model's evaluation score (part of their names)."""
    return f"class-conditional samples, {num_classes} classes in turn, guidance 1"


NULL_CLASS_SAMPLES = "unconditional null-class samples"


def score_generated_images(pipeline, real, draw, *, output_dir, dataset_name, seed: int, value_range=None):
    """
    [`evaluate_images`] of `draw(False)` for an unconditional `pipeline`. For a class-conditional one the report's
    FID/KID/IS/PRDC score `draw(True)`, samples whose labels cycle over the K classes (sample `i` of class
    `i mod K`), unguided (guidance 1): with the classes about equally frequent that is the model's conditional
    estimate of the very distribution the real images come from, whereas guidance > 1 trades diversity for class
    fidelity (the class accuracy measures that) and would score the guidance setting too. The model's null class,
    which it learns only from its label-dropout batches, is reported beside as `fid_null_class`/`kid_null_class`
    (`draw(False)`). `draw(conditional)` returns the images `[N, C, H, W]` in [0, 1].
    """
    from ...evaluation import evaluate_images

    kw = {"value_range": value_range, "seed": seed}
    if pipeline.num_classes is None:
        return evaluate_images(real, draw(False), output_dir=output_dir, dataset_name=dataset_name, **kw)
    samples = conditional_samples_name(pipeline.num_classes)
    conditional = draw(True)  # drawn first, as before: the null-class draw follows it
    null_class = {"_null_class": (NULL_CLASS_SAMPLES, draw(False))}  # scored against the same real features
    report = evaluate_images(real, conditional, output_dir=output_dir, dataset_name=dataset_name, samples=samples,
                             extra_generated=null_class, **kw)  # fmt: skip
    report.details["generated_samples"] = {"primary": samples, "_null_class": NULL_CLASS_SAMPLES}
    return report


def add_class_accuracy(report, pipeline, per_class: int, seed: int | None = 0, guidance_scale=EVAL_GUIDANCE_SCALE):
    """Add the digits-CNN's per-class accuracy on `per_class` guided samples of each class to `report`."""
    from ...evaluation.conditional import class_conditional_accuracy

    accuracy = class_conditional_accuracy(
        pipeline, samples_per_class=per_class, guidance_scale=guidance_scale, seed=(seed or 0) + 2
    )
    report.add(
        f"Class accuracy of guided samples (digits-CNN classifier, guidance {guidance_scale:g})",
        accuracy.mean,
        key="class_accuracy",
        higher_is_better=True,
        description=f"Share of {per_class} samples per class that the classifier assigns to the asked class "
        f"({accuracy.scheduler}, {accuracy.num_inference_steps} steps).",
    )
    report.details["class_accuracy"] = accuracy.to_dict()
    return accuracy


def card_fields_from_summary(summary: dict, output_dir: str, samples: str | None = None) -> dict:
    """[`ExplanationCardData`] fields from an [`explain_generation`] summary whose PNGs are in `output_dir`."""
    figures, faithfulness, sanity, explainers = {}, {}, {}, {}
    for name in dict.fromkeys(f for files in summary["files"].values() for f in files):
        if name.endswith(".png") and name != "sample.png":
            stem = name[: -len(".png")]
            figures[stem] = {"path": os.path.join(output_dir, name), "caption": stem.replace("_", " ")}
    for method, entry in summary["methods"].items():
        explainers[method] = {"timesteps": entry["timesteps"], "sample_index": summary["sample_index"]}
        if "faithfulness" in entry:
            faithfulness[method] = {k: v for k, v in entry["faithfulness"].items() if k != "per_step"}
        if "sanity_check" in entry:
            sanity[method] = entry["sanity_check"]
    if "trajectory" in summary:
        explainers["trajectory"] = {"timesteps": summary["timesteps"]}
    return {
        "samples": samples,
        "figures": figures,
        "explainers": explainers,
        "faithfulness": faithfulness or None,
        "sanity_checks": sanity or None,
    }


def png_bytes(image: PIL.Image.Image) -> bytes:
    """Encode a PIL image as PNG (deterministic for the same pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

"""One function per modality that turns a pipeline and a list of per-sample seeds into dataset columns.

Each function takes `(pipeline, generators, num_inference_steps, trace)` and returns a [`SampleBatch`]: the
samples as column lists plus the `datasets.Features` of those columns. Sample `i` of the batch is drawn with
`generators[i]` only, so it does not depend on which other samples share the batch (up to the floating-point
caveat documented in [`generate_dataset`]). Adding a modality is one more function decorated with
`@register_samples("PipelineClassName", modality=...)`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import datasets
import numpy as np
import torch

from ..capture import Trace, TraceConfig

__all__ = ["SAMPLE_FUNCTIONS", "SampleBatch", "get_sample_function", "register_samples"]


@dataclass
class SampleBatch:
    """
    Samples of one batch, as dataset columns.

    Args:
        columns (`dict[str, list]`): one list of `B` values per column (images as `{"bytes": png, "path": None}`).
        features (`datasets.Features`): the type of every column (`datasets.Image()` for images).
        trace ([`Trace`], *optional*): the sampling trace, when one was requested.
    """

    columns: dict[str, list]
    features: datasets.Features
    trace: Trace | None = None


SampleFunction = Callable[[object, list[torch.Generator], int, TraceConfig | None], SampleBatch]
SAMPLE_FUNCTIONS: dict[str, SampleFunction] = {}


def register_samples(*pipeline_class_names: str, modality: str) -> Callable[[SampleFunction], SampleFunction]:
    """
    Register a sample function for pipelines whose class (or a base class) has one of these names. `modality` (a
    registered [`Modality`] name: `"image"`, `"tabular"`, `"timeseries"`) is stored as `fn.modality` and picks the
    dataset card's task categories.
    """

    def wrap(fn: SampleFunction) -> SampleFunction:
        fn.modality = modality
        for name in pipeline_class_names:
            SAMPLE_FUNCTIONS[name] = fn
        return fn

    return wrap


def get_sample_function(pipeline) -> SampleFunction:
    """The sample function for `pipeline` (looked up along its class hierarchy)."""
    for cls in type(pipeline).__mro__:
        if cls.__name__ in SAMPLE_FUNCTIONS:
            return SAMPLE_FUNCTIONS[cls.__name__]
    from ..modalities import Modality, modality_of

    try:
        modality = modality_of(pipeline)
    except ValueError:
        modality = None
    if modality is not None and type(modality).sample_batch is not Modality.sample_batch:
        sample = partial(type(modality).sample_batch, modality)  # the registered modality writes its own columns
        sample.modality = modality.name
        return sample
    raise ValueError(
        f"Cannot generate a dataset from a {type(pipeline).__name__}: supported pipelines are "
        f"{sorted(SAMPLE_FUNCTIONS)}. Register one with `diffusers_xai.generation.register_samples`."
    )


def png_bytes(image) -> bytes:
    """Encode a PIL image as PNG (deterministic for the same pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@register_samples("DiffusionXAIPipeline", modality="image")
def image_samples(pipeline, generators, num_inference_steps, trace) -> SampleBatch:
    """Images from a [`DiffusionXAIPipeline`], stored as PNG bytes in a `datasets.Image()` column."""
    out = pipeline(
        batch_size=len(generators),
        generator=generators,
        num_inference_steps=num_inference_steps,
        trace=trace,
        output_type="pil",
    )
    columns = {"image": [{"bytes": png_bytes(img), "path": None} for img in out.images]}
    return SampleBatch(columns, datasets.Features({"image": datasets.Image()}), out.trace)


def _value_type(dtype) -> str:
    if dtype.kind == "b":
        return "bool"
    if dtype.kind in "iu":
        return "int64"
    if dtype.kind == "f":
        return "float64"
    return "string"


@register_samples("TabularXAIPipeline", modality="tabular")
def table_samples(pipeline, generators, num_inference_steps, trace) -> SampleBatch:
    """
    Rows from a `TabularXAIPipeline`, one column per column of the original table.

    The pipeline draws all class labels of a batch from its first generator; here each row's label is drawn from
    that row's own generator first, so rows stay independent of the batch they are generated in.
    """
    labels = None
    pre = pipeline.preprocessor
    if getattr(pre, "condition", None) is not None:
        probs = pre.class_probabilities.float()
        labels = torch.cat([torch.multinomial(probs, 1, generator=g) for g in generators])
    out = pipeline(
        num_rows=len(generators),
        generator=generators,
        class_labels=labels,
        num_inference_steps=num_inference_steps,
        trace=trace,
        output_type="pd",
    )
    frame = out.rows
    columns, features = {}, {}
    for name in frame.columns:
        values = frame[name].to_numpy()
        kind = _value_type(values.dtype)
        features[str(name)] = datasets.Value(kind)
        columns[str(name)] = [str(v) for v in values] if kind == "string" else values.tolist()
    return SampleBatch(columns, datasets.Features(features), out.trace)


@register_samples("TimeSeriesXAIPipeline", modality="timeseries")
def timeseries_samples(pipeline, generators, num_inference_steps, trace) -> SampleBatch:
    """Windows from a `TimeSeriesXAIPipeline` in original units: one `[length, channels]` float32 array per sample."""
    out = pipeline(
        num_series=len(generators),
        generator=generators,
        num_inference_steps=num_inference_steps,
        trace=trace,
        output_type="np",
    )
    series = np.asarray(out.series, dtype=np.float32)  # [N, L, C]
    feature = datasets.Array2D(shape=tuple(series.shape[1:]), dtype="float32")
    return SampleBatch({"series": [s.tolist() for s in series]}, datasets.Features({"series": feature}), out.trace)

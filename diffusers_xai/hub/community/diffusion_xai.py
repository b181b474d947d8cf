# Community pipeline for diffusers: unconditional image generation with step-by-step tracing and explanations.
#
#     from diffusers import DiffusionPipeline
#     pipe = DiffusionPipeline.from_pretrained("user/repo", custom_pipeline="diffusion_xai", trust_remote_code=True)
#     out = pipe(batch_size=4, num_inference_steps=50, trace=True)
#
# The pipeline is `diffusers_xai.DiffusionXAIPipeline`; this file only makes it reachable from stock diffusers.
# diffusers' `find_pipeline_class` picks the single `DiffusionPipeline` subclass visible in this module that is not
# defined by diffusers itself, so the import below must stay the only one.
"""`DiffusionXAIPipeline` as a diffusers community pipeline (needs `pip install diffusers-xai`)."""

try:
    from diffusers_xai import DiffusionXAIPipeline
except ImportError as err:  # pragma: no cover - exercised only without diffusers-xai installed
    raise ImportError(
        "The `diffusion_xai` community pipeline runs `DiffusionXAIPipeline` from the diffusers-xai package, which is "
        "not installed: `pip install diffusers-xai` (or `pip install -e .` in a diffusers-xai checkout), then load "
        "the pipeline again."
    ) from err

__all__ = ["DiffusionXAIPipeline"]

"""Single-file community pipelines shipped with the package and uploaded next to checkpoints by `publish()`.

The files here are data, never imported by `diffusers_xai`: diffusers loads them from a Hub repo or a local path
with `DiffusionPipeline.from_pretrained(..., custom_pipeline=..., trust_remote_code=True)`.
"""

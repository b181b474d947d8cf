"""diffusers' `callback_on_step_end` on this package's pipelines: the contract of `StableDiffusionPipeline`'s, so
diffusers' `PipelineCallback`s work unchanged."""

import pytest
import torch
from diffusers import DDIMScheduler

from diffusers_xai import DiffusionXAIPipeline, TraceConfig
from diffusers_xai.capture import LatentTraceCallback
from diffusers_xai.testing import seeded_generator as gen
from diffusers_xai.testing import tiny_tabular_pipeline, tiny_unet

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 4


@pytest.fixture(scope="module")
def pipe():
    pipe = DiffusionXAIPipeline(unet=tiny_unet(seed=0), scheduler=DDIMScheduler(num_train_timesteps=50))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, **kwargs):
    return pipe(batch_size=2, generator=gen(), num_inference_steps=STEPS, output_type="pt", **kwargs).images


def test_the_callback_sees_every_step_and_changes_nothing_by_returning_its_inputs(pipe):
    seen = []

    def callback(p, i, t, kwargs):
        seen.append((p is pipe, i, t, tuple(kwargs), tuple(kwargs["latents"].shape), p.num_timesteps))
        return kwargs

    images = run(pipe, callback_on_step_end=callback)
    timesteps = pipe.scheduler.timesteps.tolist()
    assert seen == [(True, i, timesteps[i], ("latents",), (2, 1, 8, 8), STEPS) for i in range(STEPS)]
    assert torch.equal(images, run(pipe))


def test_returned_latents_replace_x_t_minus_1(pipe):
    """Zero latents after the last step decode to mid-grey; zeroed after the first, the rest of the run starts
    from x = 0, as the pipeline's own loop would from `latents` = 0 over the last steps."""

    def zero_at(step):
        return lambda p, i, t, kwargs: {"latents": torch.zeros_like(kwargs["latents"])} if i == step else {}

    assert torch.equal(run(pipe, callback_on_step_end=zero_at(STEPS - 1)), torch.full((2, 1, 8, 8), 0.5))
    after_first = run(pipe, callback_on_step_end=zero_at(0))
    x = torch.zeros(2, 1, 8, 8)
    pipe.scheduler.set_timesteps(STEPS)
    with torch.no_grad():
        for t in pipe.scheduler.timesteps[1:]:
            x = pipe.scheduler.step(pipe.unet(x, t).sample, t, x).prev_sample
    torch.testing.assert_close(after_first, (x / 2 + 0.5).clamp(0, 1))


def test_interrupt_returns_the_steps_so_far(pipe):
    def stop_after_first(p, i, t, kwargs):
        p._interrupt = True
        return {}

    full = run(pipe)
    first = next(iter(pipe.progressive(batch_size=2, generator=gen(), num_inference_steps=STEPS))).prev_sample
    stopped = run(pipe, callback_on_step_end=stop_after_first)
    torch.testing.assert_close(stopped, (first / 2 + 0.5).clamp(0, 1))
    assert pipe.interrupt and not torch.equal(stopped, full)
    assert torch.equal(run(pipe), full)  # the next call starts uninterrupted


def test_diffusers_pipeline_callbacks_work_unchanged(pipe):
    """Our `LatentTraceCallback` (a diffusers `PipelineCallback`, written for stock pipelines) records the same
    x_{t-1} the pipeline's own trace holds as the next step's input."""
    callback = LatentTraceCallback(TraceConfig(steps="all", dtype=torch.float32))
    out = pipe(
        batch_size=2, generator=gen(), num_inference_steps=STEPS, output_type="pt",
        trace=TraceConfig(steps="all", dtype=torch.float32), callback_on_step_end=callback,
    )  # fmt: skip
    recorded, inputs = callback.trace.stack("latents"), out.trace.stack("latents")
    torch.testing.assert_close(recorded[:-1], inputs[1:])
    assert len(callback.trace) == STEPS


def test_tables_take_callbacks_too():
    tab, _ = tiny_tabular_pipeline(scheduler="ddim")
    steps = []
    tab(num_rows=3, generator=gen(), num_inference_steps=3, callback_on_step_end=lambda p, i, t, k: steps.append(i))
    assert steps == [0, 1, 2]


def test_bad_callbacks_are_refused_naming_the_fix(pipe):
    with pytest.raises(ValueError, match=r"`callback_on_step_end_tensor_inputs` has to be in \['latents'\], but found "
                       r"\['prompt_embeds'\]"):  # fmt: skip
        run(pipe, callback_on_step_end=lambda *a: {}, callback_on_step_end_tensor_inputs=["prompt_embeds"])
    with pytest.raises(ValueError, match=r"`callback_on_step_end` must be callable as `\(pipeline, step_index, "
                       r"timestep, callback_kwargs\) -> dict`, got str"):  # fmt: skip
        run(pipe, callback_on_step_end="print")
    with pytest.raises(ValueError, match=r"`callback_on_step_end` returned list at step 0; return a dict"):
        run(pipe, callback_on_step_end=lambda p, i, t, kwargs: [kwargs["latents"]])

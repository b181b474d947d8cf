"""Trajectory analysis on a hand-built trace with known commit steps, and on a real tiny-pipeline trace."""

import pytest
import torch
from diffusers import DDPMScheduler

from diffusers_xai import Trace, TraceConfig, TraceStep
from diffusers_xai.explain import analyze_trajectory
from diffusers_xai.testing import tiny_pipeline


def hand_trace() -> Trace:
    # one sample, 1 channel, 1x3 pixels, 4 recorded steps (loop indices 0, 2, 4, 6 of 8)
    x0 = [[0.0, 0.0, 1.0], [0.0, 0.5, 0.3], [0.95, 0.5, 0.0], [1.0, 0.52, 0.0]]
    xt = [[2.0, 2.0, 2.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]
    steps = [
        TraceStep(
            step_index=2 * i,
            timestep=70 - 20 * i,
            latents=torch.tensor(xt[i]).view(1, 1, 1, 3),
            pred_original_sample=torch.tensor(x0[i]).view(1, 1, 1, 3),
        )
        for i in range(4)
    ]
    return Trace(config=TraceConfig(), steps=steps, num_inference_steps=8)


def test_commit_steps_and_curves_by_hand():
    scheduler = DDPMScheduler(num_train_timesteps=100)
    res = analyze_trajectory(hand_trace(), scheduler, eps=0.1)
    # pixel 0 is within 0.1 of 1.0 from step 4 on; pixel 1 from step 2 on; pixel 2 only at step 0... then leaves
    # (0.3 at step 2), so it commits at step 4
    assert res.commit_step.tolist() == [[[4, 2, 4]]]
    torch.testing.assert_close(res.commit_fraction, torch.tensor([[[4 / 7, 2 / 7, 4 / 7]]]))
    torch.testing.assert_close(res.latent_change[:, 0], torch.tensor([1.0, 0.0, (1 / 3) ** 0.5]))
    expected_dist = torch.tensor(
        [((1 + 0.52**2 + 1) / 3) ** 0.5, ((1 + 0.02**2 + 0.09) / 3) ** 0.5, ((0.05**2 + 0.02**2) / 3) ** 0.5, 0.0]
    )
    torch.testing.assert_close(res.x0_distance_to_final[:, 0], expected_dist)
    ab = scheduler.alphas_cumprod[torch.tensor([70, 50, 30, 10])]
    torch.testing.assert_close(res.snr, ab / (1 - ab))
    assert res.snr[0] < res.snr[-1]  # SNR grows as t falls
    # a tighter tolerance: pixel 1 (0.5 -> 0.52) now only settles at the last step
    assert analyze_trajectory(hand_trace(), eps=0.01).commit_step.tolist() == [[[6, 6, 4]]]
    # with an external final sample that the last step misses, pixels never commit (= num_inference_steps)
    never = analyze_trajectory(hand_trace(), eps=0.1, final=torch.full((1, 1, 1, 3), 5.0))
    assert never.commit_step.tolist() == [[[8, 8, 8]]]
    assert res.summary()["mean_commit_fraction"] == pytest.approx(10 / 21)


def test_trajectory_of_a_pipeline_trace():
    pipe = tiny_pipeline()
    out = pipe(
        batch_size=2, num_inference_steps=6, trace=True, output_type="pt", generator=torch.Generator().manual_seed(0)
    )
    res = analyze_trajectory(out.trace, pipe.scheduler)
    assert res.latent_change.shape == (5, 2) and res.x0_change.shape == (5, 2)
    assert res.x0_distance_to_final.shape == (6, 2) and res.x0_distance_to_final[-1].eq(0).all()
    assert res.commit_step.shape == (2, 8, 8) and res.commit_step.max() <= 5
    with pytest.raises(ValueError, match="`eps` must be a positive number"):
        analyze_trajectory(out.trace, eps=0)
    with pytest.raises(ValueError, match="`final` must have shape"):
        analyze_trajectory(out.trace, final=torch.zeros(1, 1, 8, 8))

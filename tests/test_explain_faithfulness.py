"""Deletion/insertion curves on cases with a known answer, SSIM/Spearman values, model randomisation."""

import pytest
import torch

from diffusers_xai.explain import (
    DenoiserGradCAM,
    deletion_insertion,
    map_similarity,
    model_randomization_check,
    perturbation_curve,
    perturbation_curves,
    random_map_curves,
    randomize_model,
)
from diffusers_xai.testing import tiny_traced_run, tiny_unet


def test_perturbation_curve_by_hand():
    # f = sum of pixels; x = [4, 3, 2, 1] in a 2x2 image; the map ranks pixel 3 (value 1) first
    x = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    importance = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    f = lambda inputs: inputs.sum(dim=(1, 2, 3))  # noqa: E731
    deletion = perturbation_curve(f, x, importance, "deletion", n_steps=4)
    insertion = perturbation_curve(f, x, importance, "insertion", n_steps=4)
    torch.testing.assert_close(deletion, torch.tensor([[10.0, 9.0, 7.0, 4.0, 0.0]]))
    torch.testing.assert_close(insertion, torch.tensor([[0.0, 1.0, 3.0, 6.0, 10.0]]))
    with pytest.raises(ValueError, match="one map"):
        perturbation_curve(f, x, torch.ones(1, 1, 3, 3))
    with pytest.raises(ValueError, match="`mode`"):
        perturbation_curve(f, x, importance, "blur")


def test_perturbation_curves_evaluate_the_shared_ends_once_per_sample():
    # two samples (rows of 3 features), two maps, both modes, 3 fractions: the ends (x and the baseline) are the same
    # input for every map and mode, so 2 * 2 ends + 2 modes * 2 maps * 2 samples * 2 interior points = 20 rows
    # (the per-point count would be 2 * 2 * 2 * 4 = 32); f scales each sample by its own extra argument
    seen = []

    def f(v, scale):
        seen.append(v.shape[0])
        return (v * torch.tensor([1.0, 10.0, 100.0])).sum(dim=1) * scale

    x = torch.ones(2, 3)
    maps = torch.tensor([[[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]], [[1.0, 3.0, 2.0], [2.0, 1.0, 3.0]]])
    curves = perturbation_curves(
        f, x, maps, n_steps=3, additional_forward_args=(torch.tensor([1.0, 2.0]),), batch_size=7
    )
    assert sum(seen) == 20 and max(seen) == 7
    # map 0, sample 1 deletes features 2, 1, 0 (f = 111, 11, 1, 0 times 2); insertion adds them back in that order
    torch.testing.assert_close(curves["deletion"][0, 1], torch.tensor([222.0, 22.0, 2.0, 0.0]))
    torch.testing.assert_close(curves["insertion"][0, 1], torch.tensor([0.0, 200.0, 220.0, 222.0]))
    # map 1, sample 0 deletes features 1, 2, 0
    torch.testing.assert_close(curves["deletion"][1, 0], torch.tensor([111.0, 101.0, 1.0, 0.0]))
    torch.testing.assert_close(curves["insertion"][1, 0], torch.tensor([0.0, 10.0, 110.0, 111.0]))


def cached_curves_of(f, x):
    return random_map_curves(f, x, n_random=2, n_steps=8)


def test_deletion_auc_beats_random_when_the_answer_is_known():
    # only the top-left 4x4 region matters: f = sum of that region of a positive input
    torch.manual_seed(0)
    x = torch.rand(3, 1, 8, 8) + 0.5
    region = torch.zeros(1, 1, 8, 8)
    region[..., :4, :4] = 1
    f = lambda inputs: (inputs * region).sum(dim=(1, 2, 3))  # noqa: E731
    true_map = region.expand(3, 1, 8, 8) * x  # input x gradient, the exact contribution of each pixel
    good = deletion_insertion(f, x, true_map, n_steps=16, n_random=8)
    assert (good.deletion_auc < good.random_deletion_auc).all()
    assert (good.insertion_auc > good.random_insertion_auc).all()
    assert (good.deletion_gain > 0.3).all() and (good.insertion_gain > 0.3).all()
    # the region is a quarter of the image: deleting it first takes the score to 0 at fraction 1/4
    torch.testing.assert_close(good.deletion[:, 4], torch.zeros(3))
    torch.testing.assert_close(good.deletion[:, 0], torch.ones(3))
    # random curves computed once and reused give the same scores; curves of another input are refused
    cached = deletion_insertion(
        f, x, true_map, n_steps=16, random_curves=random_map_curves(f, x, n_random=8, n_steps=16)
    )
    torch.testing.assert_close(cached.random_deletion_auc, good.random_deletion_auc)
    with pytest.raises(ValueError, match="`random_curves` are"):
        deletion_insertion(f, x, true_map, n_steps=8, random_curves=cached_curves_of(f, x[:1]))
    # the reversed map deletes irrelevant pixels first and must score worse than random
    bad = deletion_insertion(f, x, -true_map, n_steps=16, n_random=8)
    assert (bad.deletion_auc > bad.random_deletion_auc).all()
    assert bad.summary()["deletion_gain"] < 0


def test_faithful_map_beats_random_when_the_baseline_scores_above_the_input():
    # f = -sum(region * x) < 0 = f(baseline): deleting the region *raises* the score. The faithful map (input x
    # gradient, negative on the region) must still beat random; dividing by the signed span would flip this.
    torch.manual_seed(1)
    x = torch.rand(2, 1, 8, 8) + 0.5
    region = torch.zeros(1, 1, 8, 8)
    region[..., 4:, 4:] = 1
    f = lambda inputs: -(inputs * region).sum(dim=(1, 2, 3))  # noqa: E731
    res = deletion_insertion(f, x, -region * x, n_steps=16, n_random=8)
    torch.testing.assert_close(res.deletion[:, 0], -torch.ones(2))  # curves run from -1 to 0
    assert (res.deletion_gain > 0.2).all() and (res.insertion_gain > 0.2).all()


def test_map_similarity_known_values():
    a = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ssim, rho = map_similarity(a, a)
    torch.testing.assert_close(ssim, torch.ones(2), atol=1e-4, rtol=0)
    torch.testing.assert_close(rho, torch.ones(2))
    # Spearman by hand: ranks (1..9) vs their reverse -> -1; an order-preserving transform -> +1
    x = torch.arange(9.0).view(1, 3, 3)
    assert map_similarity(x, 8 - x, absolute=False)[1].item() == pytest.approx(-1.0)
    assert map_similarity(x, x**3, absolute=False)[1].item() == pytest.approx(1.0)
    # rho = 1 - 6 * sum d^2 / (n (n^2 - 1)); swapping ranks 1 and 2 of 9 gives d^2 sum 2 -> 1 - 12/720
    y = x.clone().flatten()
    y[[0, 1]] = y[[1, 0]]
    assert map_similarity(x, y.view(1, 3, 3), absolute=False)[1].item() == pytest.approx(1 - 12 / 720, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        map_similarity(a, a[:1])


def test_randomize_model_reinitialises_a_copy():
    unet = tiny_unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    random = randomize_model(unet, seed=0)
    assert all(torch.equal(v, unet.state_dict()[k]) for k, v in before.items())  # original untouched
    changed = [
        k
        for k, v in random.state_dict().items()
        if k.endswith("weight") and v.dim() > 1 and not torch.equal(v, before[k])
    ]
    assert len(changed) == len([k for k, v in before.items() if k.endswith("weight") and v.dim() > 1])
    again = randomize_model(unet, seed=0)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in random.state_dict().items())  # seeded


def test_model_randomization_check_separates_trained_from_random_weights():
    pipe, out = tiny_traced_run()
    gradcam = DenoiserGradCAM(pipe)
    t = out.trace.timesteps[1:].tolist()
    check = model_randomization_check(gradcam, out.trace, timesteps=t)
    assert check.maps.shape == check.random_maps.shape == (2, 2, 1, 8, 8)
    assert check.ssim_per_map.shape == (4,)
    assert check.ssim < 0.5 and check.spearman < 0.5
    assert not torch.allclose(check.maps, check.random_maps)

    # a "randomisation" that keeps the weights gives identical maps: the check reports 1, so it can fail
    class Identity(DenoiserGradCAM):
        def with_model(self, unet):
            return self

    same = model_randomization_check(Identity(pipe), out.trace, timesteps=t)
    assert same.ssim == pytest.approx(1.0, abs=1e-4) and same.spearman == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(TypeError, match="not a denoiser explainer"):
        model_randomization_check(object(), out.trace)


def test_magnitude_protocol_by_hand():
    # f = w . x with w = [4, 3, 2, 1], x = 1, baseline 0; the unsigned map |w| deletes feature 0 first. The random
    # reference is given by hand: the expected curve of a random order, a straight line from f(x) = 10 to 0.
    w = torch.tensor([4.0, 3.0, 2.0, 1.0])
    f = lambda v: (v * w).sum(dim=1)  # noqa: E731
    x = torch.ones(1, 4)
    ramp = torch.tensor([[[10.0, 7.5, 5.0, 2.5, 0.0]]])
    reference = (ramp, 10 - ramp)
    res = deletion_insertion(f, x, w[None], n_steps=4, random_curves=reference, signed=False)
    assert res.protocol == "magnitude" and res.signed_result is not None
    # |f - f(x)|: deletion 0, 4, 7, 9, 10 and insertion 10, 6, 3, 1, 0, over the random line's range 10
    torch.testing.assert_close(res.deletion, torch.tensor([[0.0, 0.4, 0.7, 0.9, 1.0]]))
    torch.testing.assert_close(res.insertion, torch.tensor([[1.0, 0.6, 0.3, 0.1, 0.0]]))
    torch.testing.assert_close(res.random_deletion, torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]]))
    # AUCs (trapezoid, h = 1/4): deletion 0.625 vs 0.5 (higher is better), insertion 0.375 vs 0.5 (lower is better)
    torch.testing.assert_close(res.deletion_auc, torch.tensor([0.625]))
    torch.testing.assert_close(res.insertion_auc, torch.tensor([0.375]))
    torch.testing.assert_close(res.deletion_gain, torch.tensor([0.125]))
    torch.testing.assert_close(res.insertion_gain, torch.tensor([0.125]))
    # the reversed order (smallest |w| first) moves f slowest: -0.125 on both curves
    rev = deletion_insertion(f, x, -w[None], n_steps=4, random_curves=reference, signed=False)
    torch.testing.assert_close(rev.deletion_gain, torch.tensor([-0.125]))
    torch.testing.assert_close(rev.insertion_gain, torch.tensor([-0.125]))
    summary = res.summary()
    assert summary["protocol"] == "magnitude" and summary["deletion_gain"] == pytest.approx(0.125)
    assert "signed_deletion_gain" in summary and "signed_deletion_gain" not in res.signed_result.summary()


def test_magnitude_protocol_averages_each_random_curve_in_absolute_value():
    # w = [-4, 3, 2, 1], x = 1, baseline 0, f(x) = 2. Two reference maps delete features in the orders 2, 0, 3, 1
    # (f: 2, 0, 4, 3, 0) and 3, 1, 0, 2 (f: 2, 1, -2, 2, 0): |f - 2| = 0, 2, 2, 1, 2 and 0, 1, 4, 0, 2, mean
    # 0, 1.5, 3, 0.5, 2 over the range 3. (|mean f - 2| would be 0, 1.5, 1, 0.5, 2: signs cancelling.)
    w = torch.tensor([-4.0, 3.0, 2.0, 1.0])
    f = lambda v: (v * w).sum(dim=1)  # noqa: E731
    x = torch.ones(1, 4)
    orders = torch.tensor([[[3.0, 1.0, 4.0, 2.0]], [[2.0, 3.0, 1.0, 4.0]]])  # scores: the first-deleted is highest
    curves = perturbation_curves(f, x, orders, n_steps=4)
    reference = (curves["deletion"], curves["insertion"])
    torch.testing.assert_close(reference[0][:, 0], torch.tensor([[2.0, 0, 4, 3, 0], [2, 1, -2, 2, 0]]))
    res = deletion_insertion(f, x, w.abs()[None], n_steps=4, random_curves=reference, signed=False)
    torch.testing.assert_close(res.random_deletion, torch.tensor([[0.0, 0.5, 1.0, 1 / 6, 2 / 3]]))
    # the map's own deletion |f - 2| = 0, 4, 1, 1, 2 -> AUC 7/12 against 6/12
    torch.testing.assert_close(res.deletion, torch.tensor([[0.0, 4 / 3, 1 / 3, 1 / 3, 2 / 3]]))
    torch.testing.assert_close(res.deletion_gain, torch.tensor([1 / 12]))


def test_unsigned_map_is_scored_on_its_own_claim():
    # f = w . x with mixed signs, x and the baseline independent N(0, 1) draws: replacing feature i moves f by
    # w_i (b_i - x_i), up or down at random. |w| says which features move f most, not which way: the magnitude
    # protocol rewards it (and punishes the reversed map); the signed protocol cannot tell it from random maps.
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([-8.0, 7.0, -6.0, 5.0, -4.0, 3.0, -2.0, 1.0])
    x, base = torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)
    f = lambda v: (v * w).sum(dim=1)  # noqa: E731
    kwargs = {"baseline": base, "n_steps": 8}
    good = deletion_insertion(f, x, w.abs().expand(64, 8), signed=False, **kwargs)
    bad = deletion_insertion(f, x, -w.abs().expand(64, 8), signed=False, **kwargs)
    assert good.deletion_gain.mean() > 0.1 and good.insertion_gain.mean() > 0.1
    assert bad.deletion_gain.mean() < -0.1 and bad.insertion_gain.mean() < -0.1
    assert abs(float(good.signed_result.deletion_gain.mean())) < 0.05  # the signed protocol: about random
    # a signed map of the same f (its exact contribution w_i (x_i - b_i)) is still scored by the signed protocol
    exact = deletion_insertion(f, x, w * (x - base), **kwargs)
    assert exact.protocol == "signed" and exact.signed_result is None and exact.deletion_gain.mean() > 1.0

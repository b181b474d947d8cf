import math

import numpy as np
import pytest
import torch
from sklearn.metrics import pairwise_distances

from diffusers_xai.evaluation import compute_prdc, kth_nearest_distance, nearest_neighbours


def brute_force_prdc(real, fake, k):
    """The reference algorithm (Naeem et al. 2020, clovaai/generative-evaluation-prdc) with full matrices."""
    real_radii = np.sort(pairwise_distances(real), axis=1)[:, k]
    fake_radii = np.sort(pairwise_distances(fake), axis=1)[:, k]
    d = pairwise_distances(real, fake)
    return {
        "precision": (d < real_radii[:, None]).any(axis=0).mean(),
        "recall": (d < fake_radii[None, :]).any(axis=1).mean(),
        "density": (1.0 / k) * (d < real_radii[:, None]).sum(axis=0).mean(),
        "coverage": (d.min(axis=1) < real_radii).mean(),
    }


def expected_coverage(n, m, k):
    # Naeem et al. 2020, Lemma 2: E[coverage] for identical real and fake distributions
    return 1 - math.prod((n - i) / (n + m - i) for i in range(1, k + 1))


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_chunked_prdc_equals_brute_force_reference(shift):
    rng = np.random.default_rng(0)
    real = rng.standard_normal((600, 32))
    fake = rng.standard_normal((450, 32)) + shift
    ref = brute_force_prdc(real, fake, 5)
    # 20 KB blocks: ~8 rows per chunk, so every code path crosses chunk boundaries
    out = compute_prdc(real, fake, nearest_k=5, max_bytes=20_000)
    for name, value in ref.items():
        assert getattr(out, name) == pytest.approx(value, abs=1e-12), name
    if shift:
        assert out.precision < 0.9 and out.density < 0.9


def test_identical_distributions_match_closed_form_expectations():
    # E[density] = 1 and E[coverage] = 1 - prod (N-i)/(N+M-i) for real ~ fake (Naeem et al. 2020); average 8 draws
    n = m = 400
    k = 5
    dens, cov = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        out = compute_prdc(rng.standard_normal((n, 8)), rng.standard_normal((m, 8)), nearest_k=k)
        dens.append(out.density)
        cov.append(out.coverage)
    assert np.mean(dens) == pytest.approx(1.0, abs=0.04)
    assert np.mean(cov) == pytest.approx(expected_coverage(n, m, k), abs=0.01)


def test_same_set_is_perfect_and_disjoint_set_is_zero():
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    same = compute_prdc(x, x, nearest_k=3)
    assert (same.precision, same.recall, same.coverage) == (1.0, 1.0, 1.0)
    assert same.density == pytest.approx(1.0, abs=0.05)
    far = compute_prdc(x, x + 100.0, nearest_k=3)
    assert (far.precision, far.recall, far.density, far.coverage) == (0.0, 0.0, 0.0, 0.0)


def test_nearest_neighbour_helpers_match_cdist():
    g = torch.Generator().manual_seed(1)
    q, r = torch.randn(70, 5, generator=g, dtype=torch.float64), torch.randn(90, 5, generator=g, dtype=torch.float64)
    d, i = nearest_neighbours(q, r, k=4, max_bytes=800)
    ref_d, ref_i = torch.cdist(q, r).topk(4, largest=False)
    torch.testing.assert_close(d, ref_d)
    assert torch.equal(i, ref_i)
    radii = kth_nearest_distance(r, 3, max_bytes=800)
    torch.testing.assert_close(radii, torch.cdist(r, r).sort(1).values[:, 3])


def test_bad_inputs():
    x = torch.randn(20, 4)
    with pytest.raises(ValueError, match="Feature dimensions differ"):
        compute_prdc(x, torch.randn(20, 5))
    with pytest.raises(ValueError, match="more than 5 samples"):
        compute_prdc(x, torch.randn(5, 4), nearest_k=5)
    with pytest.raises(ValueError, match="NaN"):
        compute_prdc(x, torch.full((20, 4), float("nan")))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        compute_prdc(torch.randn(20, 2, 2), x)


def test_equals_the_reference_implementation_package():
    # clovaai/generative-evaluation-prdc (pip `prdc`), the implementation behind the published numbers
    prdc = pytest.importorskip("prdc")
    rs = np.random.RandomState(0)
    real = rs.normal(0.0, 1.0, size=[1500, 64]).astype(np.float32)
    fake = rs.normal(0.2, 1.0, size=[1200, 64]).astype(np.float32)
    ref = prdc.compute_prdc(real, fake, nearest_k=5)
    out = compute_prdc(real, fake, nearest_k=5, max_bytes=2_000_000)  # chunked: 2 MB blocks
    for name, value in ref.items():
        assert getattr(out, name) == pytest.approx(float(value), abs=1e-12), name


# Naeem et al.'s README: 10,000 vs 10,000 draws of N(0, I_1000), k=5 -> 0.4772, 0.4705, 1.0555, 0.9735 for ONE
# unseeded draw. One draw's numbers move by more than ±0.01 between seeds (hub points in 1000-D; measured over seeds
# 0-11: sd 0.009 precision, 0.009 recall, 0.078 density, 0.007 coverage), so no implementation reproduces that draw to
# ±0.01. The reproducible check is the mean over seeds: precision, recall and coverage within ±0.01 of the published
# values, density within ±0.01 of its expectation 1 (Naeem et al. 2020, Sec. 4) with the published 1.0555 inside one
# sd of the draws.
PUBLISHED = {"precision": 0.4772, "recall": 0.4705, "density": 1.0555, "coverage": 0.9735}


def _published_setting(seed):
    rs = np.random.RandomState(seed)
    return rs.normal(0.0, 1.0, size=[10000, 1000]), rs.normal(0.0, 1.0, size=[10000, 1000])


@pytest.mark.slow
def test_published_reference_setting_full_size_equals_reference_algorithm():
    real, fake = _published_setting(0)
    out = compute_prdc(real, fake, nearest_k=5)
    ref = brute_force_prdc(real, fake, 5)
    for name, value in ref.items():
        assert getattr(out, name) == pytest.approx(value, abs=1e-12), name


@pytest.mark.slow
def test_published_reference_values_as_the_mean_over_seeds():
    draws = [compute_prdc(*_published_setting(seed), nearest_k=5).to_dict() for seed in range(12)]
    mean = {k: float(np.mean([d[k] for d in draws])) for k in PUBLISHED}
    sd = {k: float(np.std([d[k] for d in draws], ddof=1)) for k in PUBLISHED}
    for name in ("precision", "recall", "coverage"):
        assert mean[name] == pytest.approx(PUBLISHED[name], abs=0.01), (name, mean[name])
    assert mean["density"] == pytest.approx(1.0, abs=0.01)
    assert abs(PUBLISHED["density"] - mean["density"]) < sd["density"]
    assert mean["coverage"] == pytest.approx(expected_coverage(10000, 10000, 5), abs=0.005)

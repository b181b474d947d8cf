import pytest
import torch
from PIL import Image

from diffusers_xai.evaluation import DigitsCNN, extract_features, memorization_test
from diffusers_xai.modalities.image.data import load_digits_tensors
from diffusers_xai.viz.evaluation import plot_nearest_neighbours


@pytest.fixture(scope="module")
def split():
    x, _ = load_digits_tensors(16)
    x = (x + 1) / 2
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:1400]], x[perm[1400:]]


def test_planted_copies_flagged_and_held_out_real_data_not(split, tmp_path):
    train, held_out = split
    planted_from = torch.tensor([5, 77, 300, 1234])
    generated = torch.cat([held_out[:200], train[planted_from]])
    planted = torch.arange(200, 204)
    model = DigitsCNN.from_shipped()
    f_train = extract_features(train, model, progress=False).features
    f_gen = extract_features(generated, model, progress=False).features
    for result in (
        memorization_test(generated, train, space="pixel", max_bytes=100_000),
        memorization_test(f_gen, f_train, space="digits-CNN"),
    ):
        assert result.flagged[planted].all(), result.space
        assert not result.flagged[:200].any(), (result.space, result.ratio[:200].min())
        assert torch.equal(result.nearest_index[planted], planted_from)
        assert result.fraction_flagged == pytest.approx(4 / 204)
        assert result.ratio[planted].max() < 1e-6
        summary = result.to_dict()
        assert summary["flagged_indices"] == planted.tolist()
        assert summary["flagged_nearest_training_indices"] == planted_from.tolist()
    path = plot_nearest_neighbours(generated, train, result, tmp_path / "nn.png", num_samples=8)
    with Image.open(path) as im:
        assert im.format == "PNG"
    assert not list(tmp_path.glob(".plot-*"))  # no temp file left behind


def test_ratio_matches_hand_computation():
    train = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    gen = torch.tensor([[0.9], [5.0]])
    r = memorization_test(gen, train, k=3, alpha=0.5, threshold=1 / 3)
    # sample 0: neighbours at 0.1, 0.9, 2.1 -> 0.1 / (0.5 * 1.0333) ; sample 1: 2, 4, 5 -> 2 / (0.5 * 11/3)
    torch.testing.assert_close(r.ratio, torch.tensor([0.1 / (0.5 * 3.1 / 3), 2 / (0.5 * 11 / 3)], dtype=torch.float64))
    assert r.flagged.tolist() == [True, False]
    assert r.nearest_index.tolist() == [1, 2]


def test_memorization_bad_inputs():
    with pytest.raises(ValueError, match="differ in shape"):
        memorization_test(torch.rand(3, 1, 8, 8), torch.rand(10, 1, 16, 16))
    with pytest.raises(ValueError, match="k >= 2"):
        memorization_test(torch.rand(3, 4), torch.rand(1, 4))
    with pytest.raises(ValueError, match="must be positive"):
        memorization_test(torch.rand(3, 4), torch.rand(10, 4), threshold=0)

import json

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from diffusers_xai.evaluation import (
    DigitsCNN,
    EvaluationReport,
    add_image_distances,
    evaluate_images,
    extract_features,
    frechet_distance,
    inception_score,
    is_torch_fidelity_available,
    kernel_distance,
    resolve_feature_extractor,
    to_unit_images,
)
from diffusers_xai.modalities.image.data import load_digits_tensors


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits_tensors(16)
    return x, y


@pytest.fixture(scope="module")
def digit_features(digits):
    x, _ = digits
    return extract_features((x[:600] + 1) / 2, DigitsCNN.from_shipped(), progress=False).features


# ---- inputs ----
def test_value_ranges_and_layouts_give_the_same_images(digits):
    x = digits[0][:8]  # [-1, 1]
    unit = (x + 1) / 2
    as_uint8 = (unit * 255).round().to(torch.uint8)
    torch.testing.assert_close(to_unit_images(x)[0], unit)
    torch.testing.assert_close(to_unit_images(unit)[0], unit)
    torch.testing.assert_close(to_unit_images(as_uint8)[0], unit, atol=1 / 255, rtol=0)
    nhwc = unit.permute(0, 2, 3, 1).numpy()
    torch.testing.assert_close(to_unit_images(nhwc)[0], unit)  # numpy [N, H, W, C] (diffusers output_type="np")
    torch.testing.assert_close(to_unit_images(unit[:, 0])[0], unit)  # [N, H, W]
    pil = [Image.fromarray(a[..., 0]) for a in as_uint8.permute(0, 2, 3, 1).numpy()]
    torch.testing.assert_close(to_unit_images(pil)[0], unit, atol=1 / 255, rtol=0)
    assert to_unit_images(x)[1] == (-1.0, 1.0) and to_unit_images(as_uint8)[1] == (0.0, 255.0)


def test_bad_images_raise_clear_errors(digits):
    x = digits[0][:20]
    nan = x.clone()
    nan[3, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf in 1 of 20 images .first at index 3"):
        to_unit_images(nan, "fake")
    with pytest.raises(ValueError, match="outside the assumed value range.*value_range=\\(0, 255\\)"):
        to_unit_images(x * 127.5 + 127.5, "fake")
    with pytest.raises(ValueError, match="1 .grayscale. or 3 .RGB. channels"):
        to_unit_images(torch.rand(4, 5, 8, 8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        to_unit_images("images.png")
    with pytest.raises(ValueError, match=r"`real` images are \(1, 16, 16\).*`fake` images are \(1, 8, 8\)"):
        evaluate_images(x, torch.rand(20, 1, 8, 8), progress=False)
    with pytest.raises(ValueError, match=r"\(1, 16, 16\).*\(3, 16, 16\)"):
        evaluate_images(x, torch.rand(20, 3, 16, 16), progress=False)


# ---- metric math against known answers ----
def test_frechet_distance_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 6, generator=g, dtype=torch.float64)
    b = torch.randn(200, 6, generator=g, dtype=torch.float64) @ torch.diag(
        torch.tensor([1, 2, 0.5, 1, 1, 3.0]).double()
    )
    b = b + 0.7
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    s_a, s_b = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_kernel_distance_matches_unbiased_mmd():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    y = torch.randn(40, 4, generator=g, dtype=torch.float64) + 0.3

    def k(a, b):
        return (a @ b.T / a.shape[1] + 1) ** 3

    m = 40  # subset_size is capped at the smaller set; x is subsampled to 40 rows, so use a full-size x too
    x40 = x[:m]
    kxx, kyy, kxy = k(x40, x40), k(y, y), k(x40, y)
    expected = (kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1)) - 2 * kxy.mean()
    mean, std = kernel_distance(x40, y, subsets=3, subset_size=1000)
    assert mean == pytest.approx(float(expected), rel=1e-4)
    assert std == pytest.approx(0.0, abs=1e-5)  # every subset is the whole set


@pytest.mark.filterwarnings("ignore:std\\(\\)")  # torchmetrics' std over a single split
def test_inception_score_known_values():
    confident_uniform = torch.eye(10).repeat(20, 1) * 50  # every class equally often, p(y|x) one-hot
    assert inception_score(confident_uniform, splits=1)[0] == pytest.approx(10.0, rel=1e-4)  # exp(H(p_y)) = K
    one_class = torch.zeros(200, 10)
    one_class[:, 3] = 50
    assert inception_score(one_class, splits=2)[0] == pytest.approx(1.0, rel=1e-4)  # p(y|x) = p(y): KL 0


# ---- FID/KID behaviour in the digits-CNN space ----
def test_fid_kid_against_itself_zero_and_monotonic_in_noise(digits):
    x = digits[0][:600]
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    model = DigitsCNN.from_shipped()
    real = extract_features((x + 1) / 2, model, progress=False).features
    fids, kids = [], []
    for sigma in (0.0, 0.1, 0.2, 0.4, 0.8):
        fake = extract_features(((x + sigma * noise).clamp(-1, 1) + 1) / 2, model, progress=False).features
        fids.append(frechet_distance(real, fake))
        kids.append(kernel_distance(real, fake, subsets=10, subset_size=300)[0])
    assert fids[0] == pytest.approx(0.0, abs=1e-6)
    # the unbiased MMD² of a set against itself is -O(1/subset_size), tiny next to any real difference
    assert abs(kids[0]) < 0.05 * kids[-1]
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    assert all(a < b for a, b in zip(kids, kids[1:])), kids
    assert kids[-1] > 0.1 and fids[-1] > 1.0


def test_shipped_digits_cnn_classifies_held_out_digits(digits):
    from sklearn.model_selection import train_test_split

    x, y = digits
    _, idx_val = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y.numpy(), random_state=0)
    model = DigitsCNN.from_shipped()
    with torch.no_grad():
        accuracy = (model.logits((x[idx_val] + 1) / 2).argmax(1) == y[idx_val]).float().mean()
    assert accuracy > 0.97
    with torch.no_grad():
        rms = model((x + 1) / 2).square().mean().sqrt()
    assert 0.8 < float(rms) < 1.2  # features are scaled to unit RMS on the digits


def test_inception_path_needs_torch_fidelity():
    if is_torch_fidelity_available():
        pytest.skip("torch-fidelity is installed; see test_inception_features")
    with pytest.raises(ImportError, match="pip install torch-fidelity"):
        resolve_feature_extractor("inception")
    with pytest.raises(ValueError, match="'digits-cnn', 'inception'"):
        resolve_feature_extractor("resnet")


@pytest.mark.skipif(not is_torch_fidelity_available(), reason="torch-fidelity (InceptionV3 weights) not installed")
def test_inception_features(digits):
    extractor = resolve_feature_extractor("inception")
    out = extract_features((digits[0][:4] + 1) / 2, extractor, progress=False)
    assert out.features.shape == (4, 2048) and out.logits.shape == (4, 1008)


# ---- the whole report ----
def test_evaluate_images_report(digits, tmp_path):
    x, _ = digits
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))]  # load_digits is ordered by writer
    real, fake = x[:400], x[400:700]
    report = evaluate_images(
        real, (fake + 1) / 2, kid_subsets=10, progress=False, output_dir=tmp_path, dataset_name="sklearn digits 16x16"
    )
    assert report.feature_space == "digits-CNN" and report.num_real == 400 and report.num_generated == 300
    for m in report.metrics:
        assert "(" in m.name, f"metric name without its space/method: {m.name}"
    assert report["fid"].name == "FID (digits-CNN features)"
    assert report["kid"].name == "KID (digits-CNN features)"
    # held-out real digits: close to the real distribution, nothing memorised
    assert report["prdc_precision"].value > 0.85 and report["prdc_recall"].value > 0.85
    assert report["prdc_density"].value > 0.8 and report["prdc_coverage"].value > 0.8
    assert report["fid"].value < 1.0 and abs(report["diversity_ratio"].value - 1) < 0.05
    assert report["memorized_fraction_pixel"].value == 0.0
    assert report["classes_covered"].value == 1.0
    assert 7.0 < report["is"].value <= 10.0 and 7.0 < report["is_real"].value <= 10.0
    assert any("biased upwards at small sample counts" in w for w in report.warnings)
    pairs = report.to_eval_results()
    assert pairs[0] == ("FID (digits-CNN features)", report["fid"].value) and all(
        isinstance(v, float) for _, v in pairs
    )
    for name in ("nearest_neighbours", "prdc", "class_histogram"):
        with Image.open(report.artifacts[name]) as im:
            assert im.format == "PNG" and im.size[0] > 100
    path = report.save(tmp_path / "report.json")
    assert json.load(open(path))["metrics"][0]["name"] == "FID (digits-CNN features)"
    assert EvaluationReport.load(path) == report


def test_fewer_samples_than_feature_dims_warns_and_suggests_kid(digits, caplog):
    x = digits[0]
    report = evaluate_images(x[:300], x[300:340], kid_subsets=5, progress=False)
    assert any("covariance is singular" in w and "KID" in w for w in report.warnings)
    assert "covariance is singular" in caplog.text


def test_custom_feature_module_is_named_in_the_report(digits):
    class Mean(torch.nn.Module):
        feature_space_name = "pixel-mean"

        def forward(self, x):
            return torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3))], 1)

    x = digits[0]
    report = evaluate_images(x[:100], x[100:200], feature=Mean(), kid_subsets=5, progress=False)
    assert report["fid"].name == "FID (pixel-mean features)"
    assert "is" not in report  # no logits, no Inception Score


@pytest.mark.slow
def test_training_script_reproduces_the_shipped_classifier(tmp_path):
    # Bit-for-bit reproduction holds only on the CPU kernels the weights were trained with: on a CPU with other
    # SIMD kernels (measured: an AVX-512-FP16 Xeon) the same seeded script drifts (max |dW| 0.41) to a network of the
    # same held-out accuracy. So the check is what FID relies on: the retrained network is the shipped one as a
    # classifier -- the same held-out accuracy to one digit of 360, and the same predicted class on >= 98% of digits.
    from diffusers_xai.evaluation.features import DIGITS_CNN_DIR, DigitsCNN
    from diffusers_xai.evaluation.train_digits_features import main, parse_args
    from diffusers_xai.modalities.image.data import load_digits_tensors

    assert main(parse_args(["--output_dir", str(tmp_path)])) == 0
    card = (tmp_path / "README.md").read_text()
    assert "Held-out accuracy on the other 360 digits: **0.98" in card
    held_out = float(card.split("Held-out accuracy on the other 360 digits: **")[1].split("**")[0])
    assert abs(held_out - 0.9889) <= 1 / 360 + 1e-9
    shipped, retrained = DigitsCNN.from_pretrained(DIGITS_CNN_DIR), DigitsCNN.from_pretrained(str(tmp_path))
    x = (load_digits_tensors()[0] + 1) / 2
    with torch.no_grad():
        agreement = (shipped.logits(x).argmax(1) == retrained.logits(x).argmax(1)).float().mean().item()
    assert agreement >= 0.98


def test_second_generated_set_needs_its_own_name_and_key():
    from diffusers_xai.evaluation import EvaluationReport, add_image_distances

    images = torch.rand(8, 1, 8, 8)
    with pytest.raises(ValueError, match=r"add_image_distances needs a key_suffix and a samples description \(got ''"):
        add_image_distances(EvaluationReport(modality="image"), images, images, samples="null class", key_suffix="")


class _CountingCNN(torch.nn.Module):
    """The shipped digits CNN, counting the images it embeds."""

    def __init__(self):
        super().__init__()
        self.cnn = DigitsCNN.from_shipped()
        self.seen = 0

    def features_and_logits(self, x):
        self.seen += len(x)
        return self.cnn.features_and_logits(x)


def test_extra_generated_sets_score_as_add_image_distances_with_the_real_features_extracted_once(digits):
    x = (digits[0] + 1) / 2
    real, fake, extra = x[:300], x[300:400], x[400:500].flip(-1)  # mirrored digits: a worse set
    kw = {"progress": False, "kid_subset_size": 50, "kid_subsets": 10, "nearest_k": 3}
    counting = _CountingCNN()
    report = evaluate_images(real, fake, feature=counting, extra_generated={"_mirrored": ("mirrored", extra)}, **kw)
    assert counting.seen == 300 + 100 + 100  # real once, fake, the extra set
    reference = evaluate_images(real, fake, feature=DigitsCNN.from_shipped(), **kw)
    add_image_distances(reference, real, extra, samples="mirrored", key_suffix="_mirrored",
                        kid_subsets=10, kid_subset_size=50, progress=False)  # fmt: skip
    for key in ("fid", "kid", "fid_mirrored", "kid_mirrored"):
        assert report[key].value == pytest.approx(reference[key].value, rel=1e-9)
    assert report["fid_mirrored"].name == "FID (_CountingCNN features, mirrored)"
    assert report["fid_mirrored"].value > 3 * report["fid"].value
    with pytest.raises(ValueError, match=r"needs a key_suffix and a samples description \(got '_m', ''\)"):
        evaluate_images(real, fake, feature=counting, extra_generated={"_m": ("", extra)}, **kw)

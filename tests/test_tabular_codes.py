"""Analog-bit codes ordered by the levels' numerical geometry (`categorical_encoding="analog_bits_ordered"`)."""

import numpy as np
import pandas as pd
import pytest
import torch

from diffusers_xai.modalities.tabular.codes import (
    bisection_codes,
    codebook,
    leading_word_groups,
    level_centroids,
    pooled_centroids,
)
from diffusers_xai.modalities.tabular.levels import level_statistics
from diffusers_xai.modalities.tabular.preprocessor import TabularPreprocessor


def test_codebook_without_codes_is_the_sorted_label_binary_code():
    book = codebook(5, "analog_bits")
    assert book.shape == (5, 3)
    np.testing.assert_array_equal((book > 0).astype(int) @ [1, 2, 4], np.arange(5))
    np.testing.assert_array_equal(
        (codebook(5, "analog_bits", [4, 0, 3, 1, 2]) > 0).astype(int) @ [1, 2, 4], [4, 0, 3, 1, 2]
    )
    with pytest.raises(ValueError, match="must be 3 distinct integers"):
        codebook(3, "analog_bits", [0, 0, 1])
    with pytest.raises(ValueError, match=r"below 2\*\*2"):
        codebook(3, "analog_bits", [0, 1, 4])


def test_bisection_on_a_line_is_the_rank_along_it():
    x = np.array([5.0, -1.0, 3.0, 0.0, 7.0, 2.0, -3.0, 4.0])  # levels 0..7 at these positions
    codes = bisection_codes(x[:, None], np.ones(8))
    assert codes == np.argsort(np.argsort(x)).tolist()  # rank 0 (x = -3) gets code 0, ..., rank 7 (x = 7) code 7


def test_bisection_splits_the_wide_axis_first_then_each_half_on_its_own():
    # four levels at the corners of a rectangle wider in x than in y: the top bit is x > 0, the next one y > 0
    centroids = np.array([[2.0, 1.0], [-2.0, -1.0], [2.0, -1.0], [-2.0, 1.0]])
    assert bisection_codes(centroids, np.ones(4)) == [3, 0, 2, 1]
    # five levels (3 bits): distinct codes below 8, the two left-most levels share the top bit
    five = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [10.0, 0.0], [11.0, 0.0]])
    codes = bisection_codes(five, np.ones(5))
    assert len(set(codes)) == 5 and max(codes) < 8
    assert [c >> 2 for c in codes] == [0, 0, 0, 1, 1]


def test_level_centroids_skip_rows_without_a_level():
    centroids, counts = level_centroids(np.array([0, 1, 1, -1]), np.array([[1.0], [2.0], [4.0], [100.0]]), 3)
    np.testing.assert_array_equal(centroids[:, 0], [1.0, 3.0, 0.0])
    np.testing.assert_array_equal(counts, [1, 2, 0])


def region_frame(n_levels=40, per_level=5, seed=0):
    """A categorical `region` with 40 levels (auto: analog bits) whose labels are unrelated to their position `x`."""
    rng = np.random.default_rng(seed)
    labels = [f"r{i:02d}" for i in range(n_levels)]
    position = rng.permutation(n_levels).astype(np.float64)  # region r{i} sits at x = position[i]
    level = np.repeat(np.arange(n_levels), per_level)
    return pd.DataFrame(
        {"x": position[level] + rng.normal(0, 0.1, len(level)), "region": np.asarray(labels, dtype=object)[level]}
    ), position


def test_auto_orders_the_codes_of_many_levels_by_their_centroids(tmp_path):
    df, position = region_frame()
    pre = TabularPreprocessor.fit(df)
    spec = pre.categorical[0]
    assert spec["encoding"] == "analog_bits_ordered" and pre.feature_slices["region"] == slice(1, 7)
    # in one numerical dimension the codes increase with the level's position (40 of the 64 codes are used)
    by_position = np.asarray(spec["codes"])[np.argsort(position)]
    assert (np.diff(by_position) > 0).all() and by_position[0] == 0 and by_position[-1] < 64
    # every level's code decodes to that level
    levels = pd.DataFrame({"x": np.zeros(40), "region": spec["categories"]})
    assert pre.inverse_transform(pre.transform(levels))["region"].tolist() == spec["categories"]
    # save/load keeps the codes (they are in the config) and the transform
    pre.save_pretrained(tmp_path)
    loaded = TabularPreprocessor.from_pretrained(tmp_path)
    assert loaded.categorical[0]["codes"] == spec["codes"]
    np.testing.assert_array_equal(loaded.codebooks["region"], pre.codebooks["region"])
    assert torch.equal(loaded.transform(df), pre.transform(df))
    # "analog_bits" keeps the sorted-label code
    plain = TabularPreprocessor.fit(df, categorical_encoding="analog_bits")
    assert "codes" not in plain.categorical[0]
    np.testing.assert_array_equal(plain.codebooks["region"], codebook(40, "analog_bits"))


def test_ordered_bits_without_numerical_columns_keep_the_label_order():
    df = pd.DataFrame({"a": [f"l{i % 40}" for i in range(200)], "b": [f"m{i % 3}" for i in range(200)]})
    pre = TabularPreprocessor.fit(df, categorical_encoding="analog_bits_ordered")
    assert "codes" not in pre.categorical[0]
    np.testing.assert_array_equal(pre.codebooks["a"], codebook(40, "analog_bits"))


def test_unknown_encoding_is_refused():
    with pytest.raises(
        ValueError, match=r"must be one of \['auto', 'onehot', 'analog_bits', 'analog_bits_ordered'\], got 'gray'"
    ):
        TabularPreprocessor.fit(region_frame()[0], categorical_encoding="gray")


def test_auto_keeps_sorted_codes_when_most_levels_occur_once():
    # 40 names over 50 rows (30 seen once): a centroid would be one row's numbers, so `auto` does not order by it
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=50), "name": [f"n{i:02d}" for i in list(range(40)) + list(range(10))]})
    auto = TabularPreprocessor.fit(df)
    assert auto.categorical[0]["encoding"] == "analog_bits" and "codes" not in auto.categorical[0]
    np.testing.assert_array_equal(auto.codebooks["name"], codebook(40, "analog_bits"))
    explicit = TabularPreprocessor.fit(df, categorical_encoding="analog_bits_ordered")
    assert (
        explicit.categorical[0]["encoding"] == "analog_bits_ordered"
        and len(set(explicit.categorical[0]["codes"])) == 40
    )


def test_auto_orders_once_seen_names_by_their_first_words_centroids():
    # 64 car names, 16 per make, all seen once but two (so not an identifier); the makes' sizes lie in the order
    # bmw < dacia < citroen < audi, which sorted labels (audi, bmw, citroen, dacia) do not follow: their top bit
    # pairs audi with bmw
    rng = np.random.default_rng(0)
    makes = {"audi": 3.0, "bmw": 0.0, "citroen": 2.0, "dacia": 1.0}
    names = [f"{make} model{i}" for make in makes for i in range(16)] + ["bmw model0", "citroen model0"]
    size = np.asarray([makes[n.split()[0]] for n in names]) + rng.normal(0, 0.1, len(names))
    df = pd.DataFrame({"size": size, "name": np.asarray(names, dtype=object)})
    pre = TabularPreprocessor.fit(df)
    spec = pre.categorical[0]
    assert spec["encoding"] == "analog_bits_ordered"
    codes = dict(zip(spec["categories"], spec["codes"]))
    top = {make: {code >> 5 for name, code in codes.items() if name.startswith(make)} for make in makes}
    # each make's 16 names share the top bit, and it splits the two small makes from the two large ones
    assert top["bmw"] == top["dacia"] != top["citroen"] == top["audi"] and len(top["bmw"]) == 1
    # the two leading bits are the make's rank in size; within a make the once-seen names, which share the make's
    # centroid, keep label order
    rank = {make: r for r, make in enumerate(sorted(makes, key=makes.get))}
    assert all(code >> 4 == rank[name.split()[0]] for name, code in codes.items())
    assert all(np.diff([codes[name] for name in sorted(n for n in codes if n.startswith("audi"))]) > 0)
    # every name decodes to itself
    levels = pd.DataFrame({"size": np.zeros(64), "name": spec["categories"]})
    assert pre.inverse_transform(pre.transform(levels))["name"].tolist() == spec["categories"]


def test_pooled_centroids_use_a_levels_own_rows_else_its_groups_else_all():
    centroids = np.array([[0.0], [2.0], [10.0], [4.0], [7.0]])
    counts = np.array([3.0, 1.0, 1.0, 1.0, 1.0])
    groups = np.array([0, 0, 0, 1, 2])  # level 0 seen 3 times; levels 1-2 share its group; 3 and 4 are alone
    pooled, own = pooled_centroids(centroids, counts, groups, min_rows=2)
    overall = (0 * 3 + 2 + 10 + 4 + 7) / 7
    np.testing.assert_allclose(pooled[:, 0], [0.0, 12 / 5, 12 / 5, overall, overall])
    assert own == 1
    np.testing.assert_array_equal(leading_word_groups(["Ford pinto", "ford torino", "amc", 3, "  "]), [0, 0, 1, 2, 3])


def test_bench_in_level_range_counts_rows_inside_their_levels_real_range():
    from tests.repo_scripts import load_script

    bench = load_script("bench/tabular_quality.py")
    real = pd.DataFrame({"state": ["a", "a", "b", "b"], "lat": [1.0, 3.0, 10.0, 12.0]})
    # inside a, outside a, inside b (on its edge), an unseen level, a missing number
    rows = pd.DataFrame({"state": ["a", "a", "b", "c", "b"], "lat": [2.0, 5.0, 12.0, 2.0, np.nan]})
    assert bench.in_level_range(real, rows, "state", "lat") == pytest.approx(2 / 5)
    assert bench.coherence("wine", real, rows) == {}


def grid_frame(seed=0):
    """40 `state`s (auto: ordered analog bits) on a 5 x 8 grid of (lat, lon) cells, 10 airports each, labels
    unrelated to position."""
    rng = np.random.default_rng(seed)
    cells = rng.permutation(40)  # state s{i} covers the cell (cells[i] // 8, cells[i] % 8)
    level = np.repeat(np.arange(40), 10)
    lat = cells[level] // 8 + rng.uniform(0.1, 0.9, len(level))
    lon = cells[level] % 8 + rng.uniform(0.1, 0.9, len(level))
    states = np.asarray([f"s{i:02d}" for i in level], dtype=object)
    return pd.DataFrame({"lat": lat, "lon": lon, "state": states}), cells


def cell_match(rows: pd.DataFrame, truth: pd.DataFrame, cells: np.ndarray) -> tuple[float, float]:
    """The fraction of rows with their true state, and with it or a state in a neighbouring grid cell."""
    got = cells[[int(s[1:]) for s in rows["state"]]]
    true = cells[[int(s[1:]) for s in truth["state"]]]
    near = (np.abs(got // 8 - true // 8) <= 1) & (np.abs(got % 8 - true % 8) <= 1)
    return float(np.mean(got == true)), float(np.mean(near))


def test_posterior_decoding_puts_the_level_where_the_rows_numbers_are(tmp_path):
    df, cells = grid_frame()
    pre = TabularPreprocessor.fit(df)
    spec = pre.categorical[0]
    assert spec["encoding"] == "analog_bits_ordered" and len(spec["level_stats"]["mean"]) == 40
    x = pre.transform(df)
    # generated rows whose numbers are right but whose state bits are another row's (as the denoiser gave them)
    shuffled = x.clone()
    bits = pre.feature_slices["state"]
    shuffled[:, bits] = x[np.random.default_rng(1).permutation(len(x)), bits]
    nearest = pre.inverse_transform(shuffled, seed=0)
    posterior = pre.inverse_transform(shuffled, seed=0, levels="posterior")
    # the nearest code follows the wrong bits; the posterior follows the coordinates (diagonal Gaussians on square
    # cells: 70% in the row's own cell, 97% in it or a neighbouring one; known answers of this seed)
    exact, near = cell_match(nearest, df, cells)
    assert exact < 0.1 and near < 0.3
    exact, near = cell_match(posterior, df, cells)
    assert exact == pytest.approx(0.695) and near == pytest.approx(0.9675)
    pd.testing.assert_frame_equal(posterior.drop(columns="state"), nearest.drop(columns="state"))
    # encoded rows still come back exactly under the default, and the statistics survive save / load
    pd.testing.assert_frame_equal(pre.inverse_transform(x), df, check_exact=False, atol=1e-6)
    pre.save_pretrained(tmp_path)
    loaded = TabularPreprocessor.from_pretrained(tmp_path)
    pd.testing.assert_frame_equal(loaded.inverse_transform(shuffled, seed=0, levels="posterior"), posterior)
    with pytest.raises(ValueError, match="`levels` must be 'nearest' or 'posterior', got 'argmax'"):
        pre.inverse_transform(x, levels="argmax")


def test_posterior_decoding_skips_columns_of_once_seen_levels():
    # 40 names over 50 rows (median level seen once): no per-level statistics, the nearest code as before
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=50), "name": [f"n{i:02d}" for i in list(range(40)) + list(range(10))]})
    for encoding in ("auto", "analog_bits_ordered"):
        pre = TabularPreprocessor.fit(df, categorical_encoding=encoding)
        assert "level_stats" not in pre.categorical[0]
        x = pre.transform(df) + torch.from_numpy(rng.normal(0, 0.3, (50, pre.num_features))).float()
        pd.testing.assert_frame_equal(pre.inverse_transform(x, seed=0, levels="posterior"), pre.inverse_transform(x))


def test_level_statistics_store_no_rare_levels_own_numbers():
    values = np.array([[0.0], [2.0], [10.0], [5.0]])
    stats = level_statistics(np.array([0, 0, 1, -1]), values, 3, min_rows=2)
    np.testing.assert_allclose(np.asarray(stats["mean"])[:, 0], [1.0, 4.0, 4.0])  # level 1 (one row), 2: all rows'
    pooled = 2.0 / 3 + 1e-6  # level 0's squared deviations (1 + 1) over the 3 rows with a level
    np.testing.assert_allclose(stats["var"][0][0], (2.0 + pooled) / 3)
    np.testing.assert_allclose(np.exp(stats["log_prior"]), [3 / 6, 2 / 6, 1 / 6])

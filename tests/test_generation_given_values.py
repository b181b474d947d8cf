"""Generated tables whose rows hold given values of a column the model generates (`--given_column`): each sample
keeps the first of its own draws that holds its value, seeded by its index alone."""

import datasets
import pytest
import torch

from diffusers_xai.cli import main as cli_main
from diffusers_xai.generation import generate_dataset
from diffusers_xai.generation.given_values import draw_seed
from diffusers_xai.testing import tiny_pipeline, tiny_tabular_pipeline

STEPS = 2
LABELS = [2, 0, 0, 1]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def unconditional():
    pipe, _ = tiny_tabular_pipeline(condition_column=None)  # wine; `cultivar` (0, 1, 2) is a generated column
    return pipe


def _generate(pipe, out, **kwargs):
    args = {"num_samples": 10, "shard_size": 4, "batch_size": 3, "num_inference_steps": STEPS, "base_seed": 5}
    return generate_dataset(pipe, out, **{**args, "given_column": "cultivar", "class_labels": LABELS, **kwargs})


def _draw(pipe, seed):
    return pipe(num_rows=1, generator=[torch.Generator().manual_seed(seed)], num_inference_steps=STEPS).rows.iloc[0]


def test_each_sample_is_the_first_of_its_own_draws_that_holds_its_value(unconditional, tmp_path):
    _generate(unconditional, tmp_path / "a")
    rows = datasets.load_dataset(str(tmp_path / "a"), split="train").to_pandas()
    assert rows["cultivar"].tolist() == [LABELS[i % 4] for i in range(10)]
    assert rows["draws"].max() > 1  # some samples needed more than one draw: the test below checks the rejection
    for i, row in rows.iterrows():
        seeds = [draw_seed(5, i, r) for r in range(row["draws"])]
        assert row["seed"] == seeds[-1] and seeds[0] == 5 + i
        # the draws before the kept one were rejected, and the kept row is the pipeline's row for its seed
        assert all(_draw(unconditional, s)["cultivar"] != row["cultivar"] for s in seeds[:-1])
        assert _draw(unconditional, seeds[-1])["alcohol"] == pytest.approx(row["alcohol"], rel=1e-9)
    # the batches a sample shares do not change it: batch size 1 gives the same rows and draws
    _generate(unconditional, tmp_path / "b", batch_size=1)
    alone = datasets.load_dataset(str(tmp_path / "b"), split="train").to_pandas()
    assert alone[["cultivar", "seed", "draws"]].equals(rows[["cultivar", "seed", "draws"]])
    assert alone["alcohol"].to_numpy() == pytest.approx(rows["alcohol"].to_numpy(), rel=1e-6)


def test_draw_seeds_are_the_plain_seed_first_then_distinct_63_bit_seeds():
    assert [draw_seed(7, 3, 0), draw_seed(7, 4, 0)] == [10, 11]
    later = {draw_seed(7, i, r) for i in range(50) for r in range(1, 20)}
    assert len(later) == 50 * 19 and all(2**20 < s < 2**63 for s in later)


def test_too_few_draws_are_refused_naming_the_sample_and_the_fix(unconditional, tmp_path):
    with pytest.raises(ValueError) as err:
        _generate(unconditional, tmp_path / "c", max_tries=1)
    assert str(err.value).startswith("Sample 0 drew no row with cultivar = 2 in 1 draws")
    assert "raise --max_tries, or train with `condition_column: cultivar`" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"given_column": "alcohol"}, "Column 'alcohol' is numerical: its continuous values never equal a given"),
        ({"given_column": "colour"}, "'colour' is not a generated categorical column of this table; give one of"),
        ({"class_labels": [1, 7]}, "Column 'cultivar' has no level 7 (its levels: [0, 1, 2]); give one of them."),
        ({"class_labels": None}, "--given_column cultivar needs --class_labels: the values of 'cultivar' the"),
        ({"guidance_scale": 2.0}, "rows with a --given_column are kept by rejection, which does not guide"),
        ({"explain": True}, "--explain summarises one traced pipeline call per batch, but with --given_column"),
    ],
)
def test_bad_given_values_are_refused_before_any_work(unconditional, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        _generate(unconditional, tmp_path / "d", **kwargs)
    assert not (tmp_path / "d").exists()


def test_the_condition_column_and_images_are_refused_naming_the_fix(tmp_path):
    conditional, _ = tiny_tabular_pipeline()
    with pytest.raises(ValueError, match="'cultivar' is the model's condition column: it samples its values exactly"):
        _generate(conditional, tmp_path / "e")
    # wine's only categorical column is its condition column: no list of none to choose from
    with pytest.raises(ValueError) as err:
        _generate(conditional, tmp_path / "e", given_column="colour")
    assert str(err.value) == (
        "'colour' is not a generated categorical column: this table generates none (its condition column "
        "'cultivar': pass its values as `class_labels` alone)."
    )
    with pytest.raises(ValueError, match="only tables have; the image modality has none: drop --given_column"):
        _generate(tiny_pipeline(), tmp_path / "f", given_column="label")


def test_cli_given_values_as_text_and_the_card_repeats_them(unconditional, tmp_path, capsys):
    unconditional.save_pretrained(tmp_path / "pipe")
    argv = ["generate", "--pipeline", str(tmp_path / "pipe"), "--num_samples", "4", "--out", str(tmp_path / "ds")]
    argv += ["--num_inference_steps", str(STEPS), "--given_column", "cultivar", "--class_labels", "1", "2"]
    assert cli_main(argv) == 0, capsys.readouterr().err
    rows = datasets.load_dataset(str(tmp_path / "ds"), split="train").to_pandas()
    assert rows["cultivar"].tolist() == [1, 2, 1, 2]  # "1" on the command line is the level 1 of the int column
    card = (tmp_path / "ds" / "README.md").read_text()
    assert "--class_labels 1 2 --given_column cultivar --max_tries 100" in card
    assert "it holds the value\n`class_labels[i mod 2]` of `cultivar`, kept by rejection" in card
    bad = [*argv[:-4], "alcohol", "--class_labels", "13"]
    bad[6] = str(tmp_path / "other")
    assert cli_main(bad) == 2
    assert "Column 'alcohol' is numerical" in capsys.readouterr().err

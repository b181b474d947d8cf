"""Rows with a given value in the Tabular tab: each row's seed found by rejection, then one traced run of those seeds.

Explain and Commit steps read one traced pipeline call. Rejection over several calls gives none, so the tab rejects
one row at a time, as `diffusers-xai generate --given_column` does (`diffusers_xai.generation.sample_given_values`:
row `i` keeps the first of its draws whose column holds the value, each draw from its own seed), and then runs the
pipeline once more, traced, with one generator per row seeded by the draw it kept. A row depends on its own generator
alone, so that run writes the kept rows again, and its trace is theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from diffusers_xai.generation import sample_given_values
from diffusers_xai.modalities import get_modality

from .common import MODEL_LOCK, check_choice, check_work

ANY_ROW = "any row"
# a row that has not drawn the value after this many draws is an error: the work bound counts them all
MAX_GIVEN_DRAWS = 10
# columns with more levels are not offered: a level of one in hundreds costs hundreds of draws per row
MAX_GIVEN_LEVELS = 32


def given_choices(preprocessor) -> dict[str, tuple[str, object]]:
    """`{"column = level": (column, level)}` for every level of the generated columns of levels (`level_columns`:
    modelled, or written from other columns) of at most `MAX_GIVEN_LEVELS` levels (the condition column is chosen
    with the class instead)."""
    return {
        f"{c['name']} = {level}": (c["name"], level)
        for c in preprocessor.level_columns
        if len(c["categories"]) <= MAX_GIVEN_LEVELS
        for level in c["categories"]
    }


def parse_given(preprocessor, given: str) -> tuple[str, object] | None:
    """The `(column, level)` behind a dropdown entry, `None` for any row; an unknown entry is a `ValueError`."""
    if given in (None, ANY_ROW):
        return None
    choices = given_choices(preprocessor)
    check_choice("given value", given, [ANY_ROW, *choices])
    return choices[given]


@dataclass
class GivenValueSeeds:
    """
    The `sample_seeds(pipe, steps, seed, count)` of [`traced_generation`] for a Generate with the dropdown entry
    `given`: the run's own seed for any row; otherwise the work of `MAX_GIVEN_DRAWS` draws per row checked against
    `max_work` first, then each row's kept seed, drawn with `inputs_of(pipe)` (the visitor's class and guidance).
    """

    given: str
    inputs_of: Callable[[object], dict]
    max_work: int
    wanted: tuple[str, object] | None = None  # (column, level), once the pipeline is known
    draws: list[int] = field(default_factory=list)  # how many draws each row took

    def __call__(self, pipe, steps: int, seed: int, count: int) -> int | list[int]:
        self.wanted = parse_given(pipe.preprocessor, self.given)
        if self.wanted is None:
            return seed
        why = f"Rows with a given value take up to {MAX_GIVEN_DRAWS} draws each: "
        check_work("rows", steps, count, self.max_work, draws=MAX_GIVEN_DRAWS, why=why)
        column, level = self.wanted
        settings = {
            "given_column": column,
            "class_labels": [level],
            "max_tries": MAX_GIVEN_DRAWS,
            "base_seed": seed,
            "sample_kwargs": self.inputs_of(pipe),
            "short_fix": "this model writes that value rarely; ask for fewer rows, another value, or any row.",
        }
        with MODEL_LOCK:
            _, seeds, self.draws = sample_given_values(get_modality("tabular"), pipe, range(count), steps, settings)
        return seeds

    def summary(self, rows) -> str:
        """What the generation summary adds about the rows of the traced run (checked to hold the value)."""
        if self.wanted is None:
            return ""
        column, level = self.wanted
        if not (rows[column] == level).all():  # each row depends on its own generator alone: never
            raise RuntimeError(f"The traced run of the kept seeds wrote other values of {column!r}.")
        return f" Every row holds {column} = {level}: kept from {sum(self.draws)} draws, one row at a time."

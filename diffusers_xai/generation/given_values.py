"""Generated datasets whose samples hold given values of a column the model generates, drawn by rejection per sample.

[`sample_with_values`] pools the rows of every round, which ties a kept row to the rows drawn before it. A generated
dataset needs each sample to depend on its index alone (as its seed does), whatever batch, shard or process draws
it, so here every sample rejects on its own: sample `i` keeps the first of its draws `r = 0, 1, ...` whose column
holds its value, draw `r` seeded by [`draw_seed`]`(base_seed, i, r)`. A value the model writes with probability p
costs 1/p draws per sample on average, as in SDV's reject sampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..modalities.base import SampleBatch

__all__ = ["DRAWS_FEATURE", "draw_seed", "sample_given_values"]

DRAWS_FEATURE = "draws"
# what a sample still short after its draws is told to do (`settings["short_fix"]` replaces it)
CLI_SHORT_FIX = "raise --max_tries, or train with `condition_column: {column}` and generate with --class_labels alone."


def draw_seed(base_seed: int, index: int, draw: int) -> int:
    """
    The seed of sample `index`'s draw number `draw`: `base_seed + index` for the first draw (the seed plain
    generation gives that sample, so a sample that matches at once is the sample a plain dataset holds), then 63
    bits of `np.random.SeedSequence((base_seed, index, draw))`, which no other sample's first seed or draw repeats
    in practice (and which fits the dataset's int64 `seed` column).
    """
    if draw == 0:
        return base_seed + index
    high, low = np.random.SeedSequence((base_seed, index, draw)).generate_state(2, np.uint32).tolist()
    return ((high & 0x7FFF_FFFF) << 32) | low


def sample_given_values(
    modality, pipeline, indices: Sequence[int], num_inference_steps: int, settings: dict
) -> tuple[SampleBatch, list[int], list[int]]:
    """
    `(batch, seeds, draws)` for the samples `indices`: sample `indices[j]` is the first of its draws whose column
    `settings["given_column"]` holds `class_labels[indices[j] mod m]` (checked and spelled as the column's values by
    `modality.given_values`); `seeds[j]` is the seed of the draw kept and `draws[j]` how many it took. Each round
    draws every sample still short in one batch, so a round's cost falls as samples are kept. A sample still short
    after `settings["max_tries"]` draws raises `ValueError` naming its value and the fix. `settings["sample_kwargs"]`
    (optional) goes to every [`Modality.sample_batch`] call: e.g. a table's `class_labels` and `guidance_scale`, so
    rows of a given class hold the given value too; `settings["short_fix"]` (optional) replaces the fix the error
    names (the CLI's flags by default).
    """
    column, labels, max_tries = settings["given_column"], settings["class_labels"], settings["max_tries"]
    base_seed, sample_kwargs = settings["base_seed"], settings.get("sample_kwargs", {})
    wanted = modality.given_values(pipeline, column, [labels[i % len(labels)] for i in indices])
    kept: list[dict | None] = [None] * len(indices)
    seeds, draws = [0] * len(indices), [0] * len(indices)
    pending, features = list(range(len(indices))), None
    for draw in range(max_tries):
        if not pending:
            break
        round_seeds = [draw_seed(base_seed, indices[j], draw) for j in pending]
        generators = [torch.Generator("cpu").manual_seed(s) for s in round_seeds]
        batch = modality.sample_batch(pipeline, generators, num_inference_steps, None, **sample_kwargs)
        features, short = batch.features, []
        for k, j in enumerate(pending):
            if batch.columns[column][k] == wanted[j]:
                kept[j] = {name: values[k] for name, values in batch.columns.items()}
                seeds[j], draws[j] = round_seeds[k], draw + 1
            else:
                short.append(j)
        pending = short
    if pending:
        j = pending[0]
        raise ValueError(
            f"Sample {indices[j]} drew no row with {column} = {wanted[j]!r} in {max_tries} draws "
            f"({len(pending)} sample(s) of this batch are short): "
            + settings.get("short_fix", CLI_SHORT_FIX.format(column=column))
        )
    columns = {name: [row[name] for row in kept] for name in features}
    return SampleBatch(columns, features), seeds, draws

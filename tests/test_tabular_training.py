"""The tabular modality through the shared trainer: config keys, data policies, saved pipeline, (slow) quality."""

import numpy as np
import pandas as pd
import pytest
import torch

from diffusers_xai.modalities.tabular.data import load_wine_frame
from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline
from diffusers_xai.modalities.tabular.preprocessor import TabularPreprocessor
from diffusers_xai.training import TrainingConfig, train
from tests.test_training import QUIET

TINY = dict(
    modality="tabular",
    hidden_dims=[16, 16],
    time_embedding_dim=16,
    num_train_timesteps=50,
    train_batch_size=32,
    lr_warmup_steps=0,
    learning_rate=1e-3,
    **QUIET,
)


def test_train_wine_saves_a_pipeline_with_the_original_schema(tmp_path):
    config = TrainingConfig.from_dict(
        {
            **TINY,
            "dataset_name": "wine",
            "condition_column": "cultivar",
            "max_train_steps": 6,
            "validation_steps": 6,
            "validation_batch_size": 8,
            "validation_num_inference_steps": 4,
            "output_dir": str(tmp_path),
        }
    )
    result = train(config)
    assert result.global_step == 6 and np.isfinite(result.loss_history).all()
    assert (tmp_path / "samples" / "step_0000006.csv").exists()
    pipe = TabularXAIPipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler.config.clip_sample_range > 5.19 and pipe.denoiser.config.num_class_embeds == 3
    rows = pipe(num_rows=500, generator=torch.Generator().manual_seed(0), num_inference_steps=5).rows
    frame = load_wine_frame()
    assert rows.shape == (500, 14) and rows.dtypes.to_dict() == frame.dtypes.to_dict()


def test_nan_policy_drop_trains_on_complete_rows(tmp_path):
    frame = load_wine_frame()
    frame.loc[[0, 5, 9], "alcohol"] = np.nan
    path = tmp_path / "wine_nan.csv"
    frame.to_csv(path, index=False)
    base = {**TINY, "dataset_name": str(path), "max_train_steps": 2, "output_dir": str(tmp_path / "out")}
    with pytest.raises(ValueError, match=r"missing values in \{'alcohol': 3\}"):
        train(TrainingConfig.from_dict({**base, "nan_policy": "raise"}))
    train(TrainingConfig.from_dict({**base, "nan_policy": "drop"}))
    dropped = TabularXAIPipeline.from_pretrained(tmp_path / "out").preprocessor
    complete_case = TabularPreprocessor.fit(frame.dropna())  # the quantiles of the 175 complete rows
    assert dropped.config.nan_policy == "raise" and torch.equal(dropped.quantiles, complete_case.quantiles)
    train(TrainingConfig.from_dict({**base, "nan_policy": "impute", "output_dir": str(tmp_path / "imputed")}))
    imputed = TabularXAIPipeline.from_pretrained(tmp_path / "imputed").preprocessor
    assert imputed.config.nan_policy == "impute"
    assert imputed.numerical[0]["fill"] == pytest.approx(frame["alcohol"].median())
    train(TrainingConfig.from_dict({**base, "output_dir": str(tmp_path / "modelled")}))  # the default
    modelled = TabularXAIPipeline.from_pretrained(tmp_path / "modelled").preprocessor
    assert modelled.config.nan_policy == "model" and [c["name"] for c in modelled.missing] == ["alcohol"]


def test_the_saved_pipeline_decides_missing_values_at_its_samplers_threshold(tmp_path):
    """The trainer calibrates the missingness thresholds on DDIM rows at every check and, once before saving, on
    rows of the saved sampler (DDPM); the pipeline reads the one of the sampler it runs, by whether it adds noise."""
    frame = load_wine_frame()
    frame.loc[frame.index % 4 == 0, "alcohol"] = np.nan
    path = tmp_path / "wine_nan.csv"
    frame.to_csv(path, index=False)
    train(
        TrainingConfig.from_dict(
            {**TINY, "dataset_name": str(path), "max_train_steps": 2, "output_dir": str(tmp_path)}
        )
    )
    pipe = TabularXAIPipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    alcohol = pipe.preprocessor.missing[0]
    assert {"missing_threshold", "missing_threshold_stochastic"} <= set(alcohol)
    alcohol.update(missing_threshold=-10.0, missing_threshold_stochastic=10.0)  # ODE: all missing; DDPM: none

    def missing(**kwargs):
        rows = pipe(num_rows=20, generator=torch.Generator().manual_seed(0), num_inference_steps=5, **kwargs).rows
        return int(rows["alcohol"].isna().sum())

    assert missing() == 0  # the saved DDPM
    pipe.set_scheduler("ddim")
    assert (missing(), missing(eta=1.0)) == (20, 0)


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "categorical_encoding",
            "bits",
            r"`categorical_encoding` must be one of \['auto', 'onehot', 'analog_bits', 'analog_bits_ordered'\]",
        ),
        ("architecture", "unet", r"`architecture` must be one of \['mlp', 'resnet'\]"),
        ("hidden_dims", [16, 0], "`hidden_dims` must be a non-empty list of positive ints"),
        (
            "hidden_dims",
            "wide",
            r'`hidden_dims` must be a non-empty list of positive ints \(or "auto"\), got \'wide\'',
        ),
        ("n_quantiles", 3, "`n_quantiles` must be an int"),
        ("class_dropout_prob", 1.0, r"`class_dropout_prob` must be in \[0, 1\) \(0.1 is usual"),
        (
            "class_dropout_prob",
            0.1,
            r"`class_dropout_prob: 0.1` drops the condition to train guidance, but there is no condition_column",
        ),
        ("categorical_columns", "cultivar", None),
    ],
)
def test_modality_keys_are_validated(tmp_path, key, value, message):
    values = {**TINY, "dataset_name": "wine", "output_dir": str(tmp_path), key: value}
    if message is None:
        assert TrainingConfig.from_dict(values).modality_options.categorical_columns == ["cultivar"]
        return
    with pytest.raises(ValueError, match=message):
        TrainingConfig.from_dict(values)


def test_auto_hidden_dims_widen_the_denoiser_from_1000_rows_or_22_features(tmp_path):
    """`hidden_dims: auto` (wine.yaml's): [256, 256] below 1,000 rows the preprocessor was fitted on and below 22 model
    features, [512, 512, 512] from either; the preprocessor records its rows; a preprocessor without them (saved
    before) is refused by name."""
    from diffusers_xai.modalities.tabular.denoiser import auto_hidden_dims
    from diffusers_xai.modalities.tabular.modality import TabularModality

    assert auto_hidden_dims(1) == auto_hidden_dims(999, 21) == (256, 256)
    assert auto_hidden_dims(1000) == auto_hidden_dims(10**6, 2) == auto_hidden_dims(10, 22) == (512, 512, 512)
    config = TrainingConfig.from_dict(
        {**TINY, "dataset_name": "wine", "output_dir": str(tmp_path), "hidden_dims": "auto"}
    )
    assert config.modality_options.hidden_dims == "auto"
    rng = np.random.default_rng(0)
    for rows, width, dims in [(999, 2, (256, 256)), (1000, 2, (512, 512, 512)), (50, 22, (512, 512, 512))]:
        frame = pd.DataFrame(rng.normal(size=(rows, width)), columns=[f"x{i}" for i in range(width)])
        pre = TabularPreprocessor.fit(frame)
        assert pre.config.num_rows == rows and pre.num_features == width
        assert TabularModality().build_model(config, pre).config.hidden_dims == dims
    wine = TabularPreprocessor.fit(load_wine_frame())  # 13 numbers and the cultivar (one-hot): 16 features
    assert TabularModality().build_model(config, wine).config.hidden_dims == (256, 256)
    with pytest.raises(
        ValueError, match=r"`hidden_dims: auto` needs the number of training rows \(a positive int\), got None"
    ):
        TabularModality().build_model(config, TabularPreprocessor(columns=pre.config.columns))
    with pytest.raises(ValueError, match=r"got True"):
        auto_hidden_dims(True)


def test_class_dropout_trains_a_null_class_the_saved_pipeline_guides_with(tmp_path, monkeypatch):
    """`class_dropout_prob` adds the null class K (num_class_embeds = K + 1) and the trainer drops labels to it (every
    update, with that probability, to label K = 3); the saved pipeline then samples with guidance, and guided rows
    differ from unguided ones on the same noise."""
    from diffusers_xai.training import objective

    dropped = []

    def recording_drop(labels, prob, null_label, generator):
        out = drop_labels(labels, prob, null_label, generator)
        dropped.append((prob, null_label, int((out == null_label).sum()), len(labels)))
        return out

    drop_labels = objective.drop_labels
    monkeypatch.setattr(objective, "drop_labels", recording_drop)
    config = TrainingConfig.from_dict(
        {**TINY, "dataset_name": "wine", "condition_column": "cultivar", "class_dropout_prob": 0.5,
         "max_train_steps": 4, "output_dir": str(tmp_path)}
    )  # fmt: skip
    train(config)
    assert [(p, k) for p, k, _, _ in dropped] == [(0.5, 3)] * 4
    assert 0 < sum(n for _, _, n, _ in dropped) < sum(b for _, _, _, b in dropped)  # some labels, not all
    pipe = TabularXAIPipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    config = pipe.denoiser.config
    assert (config.num_class_embeds, config.null_class, pipe.null_class_label) == (4, True, 3)
    run = dict(num_rows=6, class_labels=[0, 1, 2] * 2, num_inference_steps=4, output_type="pt")
    guided = pipe(**run, guidance_scale=2.0, generator=torch.Generator().manual_seed(0)).rows
    plain = pipe(**run, generator=torch.Generator().manual_seed(0)).rows
    assert guided.shape == plain.shape == (6, pipe.preprocessor.num_features)
    assert (guided - plain).abs().max() > 1e-3


def test_unknown_condition_column_fails_before_training(tmp_path):
    config = TrainingConfig.from_dict(
        {**TINY, "dataset_name": "wine", "condition_column": "colour", "output_dir": str(tmp_path)}
    )
    with pytest.raises(ValueError, match=r"Columns \['colour'\] \(from the config\) are not in the dataset"):
        train(config)


@pytest.mark.slow
def test_conditional_wine_rows_are_classified_as_their_label(tmp_path):
    """After ~1.5k steps, a classifier trained on *real* wine recognises the conditioned cultivar of generated rows."""
    from sklearn.ensemble import RandomForestClassifier

    config = TrainingConfig.from_yaml(
        "train/configs/wine.yaml",
        {
            "output_dir": str(tmp_path),
            "max_train_steps": 1500,
            "validation_steps": None,
            "checkpointing_steps": None,
            "early_stopping_dcr_ratio": None,
        },
    )
    train(config)
    pipe = TabularXAIPipeline.from_pretrained(tmp_path)
    pipe.set_scheduler("ddim")
    pipe.set_progress_bar_config(disable=True)
    real = load_wine_frame()
    clf = RandomForestClassifier(n_estimators=200, random_state=0).fit(real.drop(columns="cultivar"), real["cultivar"])
    labels = torch.arange(300) % 3
    generator = torch.Generator().manual_seed(0)
    rows = pipe(num_rows=300, class_labels=labels, generator=generator, num_inference_steps=50).rows
    accuracy = float((clf.predict(rows.drop(columns="cultivar")) == rows["cultivar"]).mean())
    assert accuracy > 0.85, accuracy
    # marginals are close to the real ones (column means within 0.25 standard deviations)
    features = real.drop(columns="cultivar")
    z = (rows.drop(columns="cultivar").mean() - features.mean()) / features.std()
    assert (z.abs() < 0.25).all(), z.abs().sort_values().tail(3)
    assert isinstance(rows, pd.DataFrame)


def test_evaluation_sampling_ends_with_progress_bars_disabled(monkeypatch):
    """`TQDM_DISABLE=1` (as the benches set it) must not stop the end-of-run sampling from counting its rows: a
    disabled bar never advances, and the loop used to wait for it forever."""
    from types import SimpleNamespace

    from diffusers_xai.modalities.sampling import sample_in_batches

    monkeypatch.setenv("TQDM_DISABLE", "1")
    seeds = []

    def sample(n, generator):
        seeds.append(generator.initial_seed())
        return n

    assert sample_in_batches(sample, 130, SimpleNamespace(seed=4), batch_size=64) == [64, 64, 2]
    assert seeds == [5, 5, 5]  # one generator, seeded config.seed + 1


def test_holdout_rows_with_levels_the_training_rows_lack_do_not_stop_training(tmp_path):
    """With `validation_split`, the holdout's validation loss encodes a level only it has (a rare string, a number
    of a few-valued column) as its nearest known level instead of failing the run (iris' sepal width 2.0 did)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=60),
            "width": rng.choice([2.2, 2.5, 3.0], 60),
            "tag": np.r_[["common"] * 50, [f"rare{i}" for i in range(10)]].astype(object),
        }
    )
    frame.loc[59, "width"] = 2.0  # one row: in the holdout or in the training rows, never in both
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    config = TrainingConfig.from_dict(
        {
            **TINY,
            "dataset_name": str(tmp_path / "t.parquet"),
            "categorical_columns": ["width"],
            "validation_split": 0.3,
            "validation_steps": 2,
            "validation_batch_size": 4,
            "validation_num_inference_steps": 2,
            "max_train_steps": 2,
            "output_dir": str(tmp_path / "out"),
        }
    )
    from diffusers_xai.modalities.tabular.modality import TabularModality

    train_rows, holdout = TabularModality()._train_and_holdout(config, 10_000)
    assert set(holdout["tag"]) - set(train_rows["tag"])  # the holdout has levels the preprocessor never saw
    result = train(config)
    assert result.global_step == 2 and len(result.validation_loss_history) == 1
    assert np.isfinite(result.validation_loss_history[0][1])


def test_every_preprocessor_argument_is_a_training_key():
    """The training keys handed to `TabularPreprocessor.fit` are exactly its arguments (but the table and the seed),
    so a new argument cannot be left unreachable from a config; `nan_policy: drop` reaches it as "raise"."""
    import inspect

    from diffusers_xai.modalities.tabular.modality import TabularOptions

    config = TrainingConfig.from_dict(
        {"modality": "tabular", "dataset_name": "wine", "nan_policy": "drop", "derived_columns": False}
    )
    kwargs = config.modality_options.preprocessor_kwargs()
    arguments = set(inspect.signature(TabularPreprocessor.fit).parameters) - {"data", "seed"}
    assert set(kwargs) == arguments and arguments <= set(TabularOptions.__dataclass_fields__)
    assert kwargs["nan_policy"] == "raise" and kwargs["derived_columns"] is False


def test_a_mixed_column_is_refused_with_the_files_row_numbers(tmp_path):
    """titanic's `Ticket` (`A/5 21171` beside `349909`): checked on the training rows, the refusal counted 528 and
    185 rows of a shuffled split and named "row 5" of it. It now counts the file's rows and names the file's row."""
    from diffusers_xai.modalities.registry import get_modality

    path = tmp_path / "tickets.csv"
    tickets = ["349909", "A/5 21171", *[str(110_000 + i) for i in range(28)]]
    pd.DataFrame({"fare": np.linspace(7.25, 80.0, 30).round(2), "ticket": tickets}).to_csv(path, index=False)
    settings = {**TINY, "dataset_name": str(path), "output_dir": str(tmp_path / "run")}
    config = TrainingConfig.from_dict(settings)
    with pytest.raises(
        ValueError,
        match=r"^Column 'ticket' holds numbers in 29 rows but non-numbers in 1 \(e\.g\. "
        r"'A/5 21171' at row 1\)",
    ):
        get_modality("tabular").load_dataset(config)
    config = TrainingConfig.from_dict({**settings, "categorical_columns": ["ticket"]})
    assert get_modality("tabular").load_dataset(config).num_rows == 30
    config = TrainingConfig.from_dict({**settings, "condition_column": "ticket"})  # a condition is categorical too
    assert get_modality("tabular").load_dataset(config).num_rows == 30


@pytest.mark.parametrize(
    "columns, condition_column, message",
    [
        ({"a": [1.5], "c": ["x"]}, None, r"^The table has 1 row\(s\); a generative model needs many rows"),
        (  # the file's 50 rows are counted, not the 40 training rows of its split
            {"a": np.arange(50.0), "b": [np.nan] * 50, "c": ["x", "y"] * 25},
            None,
            r"^Column 'b' is entirely missing \(50 NaN values\); drop it",
        ),
        ({"a": np.arange(50.0), "c": ["x"] * 50}, "c", r"^The condition column 'c' has a single level 'x'"),
    ],
)
def test_bad_tables_are_refused_for_what_they_are_with_the_guard_on(tmp_path, columns, condition_column, message):
    """The recipe (wine.yaml: a 20% holdout, the DCR guard on) refused a one-row table as a holdout that leaves none to
    train on ("lower it (e.g. 0.2)", at 0.2), and a table whose other columns are an identifier (`a`) and an empty
    column, or one conditioned on its single level, as one the guard cannot judge, naming neither."""
    path = tmp_path / "table.csv"
    pd.DataFrame(columns).to_csv(path, index=False)
    config = TrainingConfig.from_yaml(
        "train/configs/wine.yaml",
        {
            "dataset_name": str(path),
            "condition_column": condition_column,
            "output_dir": str(tmp_path / "run"),
            "max_train_steps": 5,
        },
    )
    with pytest.raises(ValueError, match=message):
        train(config)

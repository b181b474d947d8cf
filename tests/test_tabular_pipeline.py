"""TabularXAIPipeline and TabularDenoiser: schema of the output, conditioning, tracing, persistence, mismatches."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from diffusers_xai.modalities.tabular.data import load_breast_cancer_frame, load_wine_frame
from diffusers_xai.modalities.tabular.pipeline_tabular import TabularXAIPipeline, TabularXAIPipelineOutput
from diffusers_xai.modalities.tabular.preprocessor import QUANTILE_NORMAL_BOUND, TabularPreprocessor
from diffusers_xai.models import TabularDenoiser
from diffusers_xai.testing import seeded_generator as gen
from diffusers_xai.testing import tiny_tabular_pipeline


@pytest.mark.parametrize("architecture", ["mlp", "resnet"])
def test_denoiser_shapes_config_and_errors(architecture):
    model = TabularDenoiser(in_features=7, hidden_dims=(8, 8), architecture=architecture, time_embedding_dim=8)
    out = model(torch.randn(4, 7), torch.tensor([1, 2, 3, 4]))
    assert out.sample.shape == (4, 7)
    x = torch.randn(4, 7, generator=gen())
    (tup,) = model(x, 5, return_dict=False)
    assert torch.equal(tup, model(x, torch.full((4,), 5)).sample)  # scalar t is broadcast
    with pytest.raises(ValueError, match=r"`sample` must have shape \[B, 7\]"):
        model(torch.randn(4, 6), 1)
    with pytest.raises(ValueError, match="this denoiser is unconditional"):
        model(torch.randn(4, 7), 1, class_labels=torch.zeros(4, dtype=torch.long))
    cond = TabularDenoiser(in_features=7, hidden_dims=(8,), time_embedding_dim=8, num_class_embeds=3)
    with pytest.raises(ValueError, match="pass `class_labels`"):
        cond(torch.randn(2, 7), 1)
    with pytest.raises(ValueError, match=r"integer indices in \[0, 3\)"):
        cond(torch.randn(2, 7), 1, class_labels=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="`architecture` must be 'mlp' or 'resnet'"):
        TabularDenoiser(architecture="transformer")


def test_rows_have_the_original_schema(wine_pipe):
    pipe, frame = wine_pipe
    out = pipe(num_rows=40, generator=gen(), num_inference_steps=5)
    assert isinstance(out, TabularXAIPipelineOutput)
    rows = out.rows
    assert list(rows.columns) == list(frame.columns) and rows.dtypes.to_dict() == frame.dtypes.to_dict()
    assert len(rows) == 40 and rows.notna().all().all()
    assert set(rows["cultivar"]) <= {0, 1, 2}
    for col in frame.columns:
        assert frame[col].min() <= rows[col].min() and rows[col].max() <= frame[col].max(), col
    assert (rows["proline"] == rows["proline"].round()).all()


def test_breast_cancer_string_category_and_unconditional():
    pipe, frame = tiny_tabular_pipeline(load_breast_cancer_frame(), condition_column=None)
    rows = pipe(num_rows=16, generator=gen(), num_inference_steps=3).rows
    assert rows["diagnosis"].dtype == object and set(rows["diagnosis"]) <= {"benign", "malignant"}
    assert rows.shape == (16, 31)
    with pytest.raises(ValueError, match="this pipeline is unconditional; draw rows with given values of a column by "
        "rejection with `diffusers_xai.modalities.tabular.sample_with_values`"):  # fmt: skip
        pipe(num_rows=2, class_labels=["benign"], num_inference_steps=2)


def test_fixed_seed_is_reproducible_and_matches_hard_coded_slice(wine_pipe):
    pipe, _ = wine_pipe
    a = pipe(num_rows=3, generator=gen(0), num_inference_steps=4, output_type="pt")
    b, labels, trace = pipe(num_rows=3, generator=gen(0), num_inference_steps=4, output_type="pt", return_dict=False)
    assert torch.equal(a.rows, b) and torch.equal(a.class_labels, labels) and trace is None
    assert a.rows.shape == (3, 13)
    expected = torch.tensor([0.2817, -2.5562, -0.6331, 0.3756])
    torch.testing.assert_close(a.rows[0, :4], expected, atol=1e-3, rtol=0)


def test_conditional_generation_respects_class_labels(wine_pipe):
    pipe, _ = wine_pipe
    rows = pipe(num_rows=10, class_labels=2, generator=gen(), num_inference_steps=3).rows
    assert (rows["cultivar"] == 2).all()
    out = pipe(num_rows=3, class_labels=[0, 1, 2], generator=gen(), num_inference_steps=3)
    assert out.rows["cultivar"].tolist() == [0, 1, 2] and out.class_labels.tolist() == [0, 1, 2]
    assert (
        pipe(num_rows=2, class_labels=np.int64(2), generator=gen(), num_inference_steps=2).rows["cultivar"] == 2
    ).all()
    idx = pipe(num_rows=2, class_labels=torch.tensor([1, 1]), generator=gen(), num_inference_steps=3)
    assert idx.rows["cultivar"].tolist() == [1, 1]
    # the label changes the rows: same noise, different class
    x0 = pipe(num_rows=4, class_labels=0, generator=gen(), num_inference_steps=3, output_type="pt").rows
    x1 = pipe(num_rows=4, class_labels=1, generator=gen(), num_inference_steps=3, output_type="pt").rows
    assert not torch.allclose(x0, x1)
    # None draws labels from the training frequencies (59/71/48)
    drawn = pipe(num_rows=2000, generator=gen(), num_inference_steps=1).class_labels
    np.testing.assert_allclose(
        np.bincount(drawn.numpy(), minlength=3) / 2000, [59 / 178, 71 / 178, 48 / 178], atol=0.03
    )
    with pytest.raises(ValueError, match=r"'cultivar' has levels \[5\] unseen"):
        pipe(num_rows=2, class_labels=[5, 5], num_inference_steps=2)
    with pytest.raises(ValueError, match=r"Class indices must be in \[0, 3\)"):
        pipe(num_rows=2, class_labels=torch.tensor([0, 3]), num_inference_steps=2)
    with pytest.raises(ValueError, match="Got 2 class labels for num_rows=3"):
        pipe(num_rows=3, class_labels=[0, 1], num_inference_steps=2)


def test_guidance_is_the_hand_computed_mix_of_the_class_and_null_predictions():
    """One DDIM step from x_T under guidance s is the step taken with eps_null + s (eps_y - eps_null), both computed
    here by separate denoiser calls; s = 1 is the conditional model alone."""
    pipe, _ = tiny_tabular_pipeline(null_class=True, scheduler="ddim")
    assert pipe.null_class_label == 3 and pipe.denoiser.config.num_class_embeds == 4
    x_T = torch.randn(4, pipe.preprocessor.num_features, generator=gen())
    labels = torch.tensor([0, 1, 2, 1])
    run = dict(num_rows=4, class_labels=labels, latents=x_T, num_inference_steps=1, output_type="pt")
    guided, plain = pipe(**run, guidance_scale=3.0).rows, pipe(**run).rows
    pipe.scheduler.set_timesteps(1)
    t = pipe.scheduler.timesteps[0]
    with torch.no_grad():
        eps_y = pipe.denoiser(x_T, t, class_labels=labels).sample
        eps_null = pipe.denoiser(x_T, t, class_labels=torch.full_like(labels, 3)).sample
    torch.testing.assert_close(guided, pipe.scheduler.step(eps_null + 3.0 * (eps_y - eps_null), t, x_T).prev_sample)
    torch.testing.assert_close(plain, pipe.scheduler.step(eps_y, t, x_T).prev_sample)
    assert (guided - plain).abs().max() > 1e-3
    rows = pipe(num_rows=3, class_labels=[0, 1, 2], guidance_scale=2.0, generator=gen(), num_inference_steps=3).rows
    assert rows["cultivar"].tolist() == [0, 1, 2]


def test_guidance_needs_a_null_class_and_a_scale_of_at_least_one(wine_pipe):
    pipe, _ = wine_pipe  # K = 3 class embeddings, no null class
    assert pipe.null_class_label is None
    message = (
        r"`guidance_scale`=2.0 needs a class-conditional model trained with label dropout; this denoiser has no null "
        r"class \(num_class_embeds=3 for 3 classes\)\. Use guidance_scale=1, or train with a condition_column and "
        r"class_dropout_prob: 0.1\."
    )
    with pytest.raises(ValueError, match=message):
        pipe(num_rows=2, class_labels=0, guidance_scale=2.0, num_inference_steps=2)
    with pytest.raises(ValueError, match=r"`guidance_scale` must be a number >= 1 .*got 0.5"):
        pipe(num_rows=2, guidance_scale=0.5, num_inference_steps=2)
    unconditional, _ = tiny_tabular_pipeline(condition_column=None)
    with pytest.raises(ValueError, match=r"no null class \(num_class_embeds=None for None classes\)"):
        unconditional(num_rows=2, guidance_scale=2.0, num_inference_steps=2)
    # K + 1 embeddings are K classes and the null class only when the denoiser says so (`null_class`): a null-class
    # model for 3 cultivars does not fit a 4-level condition column, nor a plain 3-class model a 2-level one
    guided, frame = tiny_tabular_pipeline(null_class=True)
    four = TabularPreprocessor.fit(frame.assign(cultivar=np.arange(len(frame)) % 4), condition_column="cultivar")
    with pytest.raises(ValueError, match=r"num_class_embeds=4 \(the last one the null class\) but .* has 4 classes"):
        TabularXAIPipeline(guided.denoiser, guided.scheduler, four)


def test_trace_records_model_space_rows(wine_pipe):
    pipe, _ = wine_pipe
    latents = torch.randn(5, 13, generator=gen(1))
    kwargs = dict(num_rows=5, class_labels=1, latents=latents, num_inference_steps=6, output_type="pt")
    out = pipe(**kwargs, generator=gen(2), trace=True)
    trace = out.trace
    assert len(trace) == 6 and trace.stack("latents").shape == (6, 5, 13)
    assert trace.stack("pred_original_sample").shape == (6, 5, 13)
    torch.testing.assert_close(trace.steps[0].latents.float(), latents, atol=2e-3, rtol=2e-3)  # fp16 storage
    torch.testing.assert_close(trace.steps[-1].pred_original_sample.float(), out.rows, atol=2e-3, rtol=2e-3)
    plain = pipe(**kwargs, generator=gen(2))
    assert torch.equal(plain.rows, out.rows)  # tracing does not change the samples
    assert not pipe.denoiser._forward_pre_hooks and not pipe.denoiser._forward_hooks


def test_save_and_from_pretrained_round_trip(tmp_path, wine_pipe):
    pipe, _ = wine_pipe
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["preprocessor"] == ["diffusers_xai.modalities.tabular.preprocessor", "TabularPreprocessor"]
    assert index["denoiser"] == ["diffusers_xai.modalities.tabular.denoiser", "TabularDenoiser"]
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pkl"))
    loaded = TabularXAIPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    a = pipe(num_rows=8, generator=gen(3), num_inference_steps=4).rows
    b = loaded(num_rows=8, generator=gen(3), num_inference_steps=4).rows
    pd.testing.assert_frame_equal(a, b)
    assert loaded.scheduler.config.clip_sample_range == QUANTILE_NORMAL_BOUND
    # pipelines saved before the modality folders, or before the preprocessor left data.py, name the old modules;
    # they still load
    for module in ("diffusers_xai.data.tabular", "diffusers_xai.modalities.tabular.data"):
        index.update(preprocessor=[module, "TabularPreprocessor"])
        index.update(denoiser=["diffusers_xai.models.tabular_denoiser", "TabularDenoiser"])
        (tmp_path / "model_index.json").write_text(json.dumps(index))
        old = TabularXAIPipeline.from_pretrained(tmp_path)
        old.set_progress_bar_config(disable=True)
        pd.testing.assert_frame_equal(a, old(num_rows=8, generator=gen(3), num_inference_steps=4).rows)


def test_schedulers_clip_to_the_data_support_not_to_unit_range(wine_pipe, caplog):
    pipe, frame = wine_pipe
    for name, cls in [("ddim", DDIMScheduler), ("dpmsolver", DPMSolverMultistepScheduler), ("ddpm", DDPMScheduler)]:
        pipe.set_scheduler(name)
        assert type(pipe.scheduler) is cls
        assert getattr(pipe.scheduler.config, "clip_sample_range", QUANTILE_NORMAL_BOUND) == QUANTILE_NORMAL_BOUND
        assert not getattr(pipe.scheduler.config, "thresholding", False)
        rows = pipe(num_rows=4, generator=gen(), num_inference_steps=5).rows
        assert rows.dtypes.to_dict() == frame.dtypes.to_dict()
    with caplog.at_level(logging.WARNING):
        TabularXAIPipeline(pipe.denoiser, DDPMScheduler(num_train_timesteps=50), pipe.preprocessor)
    assert "clips/thresholds x0" in caplog.text


def test_ddim_copy_keeps_the_datas_clipping_and_not_a_hand_set_sampler(wine_pipe, caplog):
    """The modality's DDIM (validation, evaluation, explanations) clips x0 to the data's support whatever sampler the
    pipeline was last given by hand, and does not warn about the thresholding sampler it replaces."""
    from diffusers_xai.modalities import get_modality

    pipe, _ = wine_pipe
    pipe.set_scheduler("dpmsolver", algorithm_type="sde-dpmsolver++", thresholding=True)
    try:
        with caplog.at_level(logging.WARNING, logger="diffusers_xai"):
            scheduler = get_modality("tabular").ddim(pipe).scheduler
        assert caplog.records == []
        config = scheduler.config
        assert type(scheduler) is DDIMScheduler
        assert (config.clip_sample, config.clip_sample_range, config.thresholding) == (
            True,
            QUANTILE_NORMAL_BOUND,
            False,
        )
        assert config.timestep_spacing == "leading"
    finally:
        pipe.set_scheduler("ddpm")


def test_preprocessor_model_mismatch_and_bad_arguments(wine_pipe):
    pipe, frame = wine_pipe
    other = TabularPreprocessor.fit(load_breast_cancer_frame())
    with pytest.raises(ValueError, match="expects 13 features per row but the preprocessor produces 38"):
        TabularXAIPipeline(pipe.denoiser, pipe.scheduler, other)
    unconditional = TabularPreprocessor.fit(frame)  # cultivar becomes an ordinary 3-level column: 16 features
    with pytest.raises(ValueError, match="expects 13 features per row but the preprocessor produces 16"):
        TabularXAIPipeline(pipe.denoiser, pipe.scheduler, unconditional)
    frame2 = frame.assign(cultivar=frame["cultivar"].clip(upper=1))
    two_classes = TabularPreprocessor.fit(frame2, condition_column="cultivar")
    with pytest.raises(
        ValueError, match="num_class_embeds=3 but the preprocessor's condition column 'cultivar' has 2"
    ):
        TabularXAIPipeline(pipe.denoiser, pipe.scheduler, two_classes)
    with pytest.raises(TypeError, match="must be a TabularPreprocessor"):
        TabularXAIPipeline(pipe.denoiser, pipe.scheduler, None)
    with pytest.raises(ValueError, match="`num_rows` must be a positive int"):
        pipe(num_rows=0)
    with pytest.raises(ValueError, match="`num_inference_steps` must be between 1 and"):
        pipe(num_rows=1, num_inference_steps=51)
    with pytest.raises(ValueError, match=r"`latents` have shape \(2, 5\)"):
        pipe(num_rows=2, latents=torch.zeros(2, 5), num_inference_steps=2)
    with pytest.raises(ValueError, match="`output_type` must be 'pd' or 'pt'"):
        pipe(num_rows=1, num_inference_steps=2, output_type="np")


def test_dpm_solver_does_not_start_where_the_cosine_schedule_diverges():
    """DPM-Solver++ cannot clip x0; started at t=999 of a 1000-step cosine schedule (sigma/alpha = 20,291) it turned an
    untrained denoiser's rows into |x| = 8e4 (every benchmark table scored detection AUC 1.0); from t=950, 60."""
    frame = load_wine_frame()
    pre = TabularPreprocessor.fit(frame)
    torch.manual_seed(0)
    denoiser = TabularDenoiser(in_features=pre.num_features, hidden_dims=(16, 16), time_embedding_dim=16).eval()
    pipe = TabularXAIPipeline.from_denoiser(
        denoiser, pre, "ddpm", num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.set_scheduler("dpmsolver")
    rows = pipe(num_rows=64, generator=gen(), num_inference_steps=25, output_type="pt").rows
    assert pipe.scheduler.timesteps[0].item() == 950 and rows.abs().max().item() == pytest.approx(59.67, rel=1e-3)
    pipe.set_scheduler("dpmsolver", timestep_spacing="trailing")  # the pixel default
    rows = pipe(num_rows=64, generator=gen(), num_inference_steps=25, output_type="pt").rows
    assert pipe.scheduler.timesteps[0].item() == 999 and rows.abs().max().item() > 1e4


def test_a_list_of_generators_draws_each_rows_class_from_its_own_generator(wine_pipe):
    pipe, _ = wine_pipe

    def generators():
        return [torch.Generator().manual_seed(s) for s in range(8)]

    together = pipe(num_rows=8, generator=generators(), num_inference_steps=2).class_labels
    alone = torch.cat([pipe(num_rows=1, generator=[g], num_inference_steps=2).class_labels for g in generators()])
    assert together.tolist() == alone.tolist() and len(set(together.tolist())) == 3

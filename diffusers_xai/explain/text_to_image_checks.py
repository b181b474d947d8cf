r"""Beyond word maps: IG of x̂0 to the token embeddings, word-map deletion, randomised-denoiser sanity check."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .denoiser_call import DenoiserCall
from .faithfulness import FaithfulnessResult, deletion_insertion, diffused_baseline
from .prompt_tokens import PromptLayout
from .randomization import SanityCheckResult, map_similarity

__all__ = ["region_mask", "token_integrated_gradients", "word_deletion_checks", "word_map_sanity"]


def region_mask(region: tuple[float, float, float, float] | None, size: tuple[int, int]) -> torch.Tensor:
    """A `[h, w]` 0/1 mask of `region` = (top, left, bottom, right) as fractions of the image (`None`: everything)."""
    h, w = size
    mask = torch.zeros(h, w)
    if region is None:
        return mask + 1
    top, left, bottom, right = region
    if not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
        raise ValueError(
            f"`region` must be (top, left, bottom, right) fractions with top<bottom, left<right: {region}."
        )
    mask[
        int(top * h) : max(int(top * h) + 1, round(bottom * h)),
        int(left * w) : max(int(left * w) + 1, round(right * w)),
    ] = 1
    return mask


def token_integrated_gradients(
    call: DenoiserCall,
    region: tuple[float, float, float, float] | None = None,
    n_steps: int = 16,
    internal_batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    Integrated gradients (captum) of $\sum_{\text{region}} \hat{x}_0$ at one step w.r.t. the text embeddings `[M, D]`,
    summed over the embedding dimension: one attribution per text key position, `[M]`, and the convergence delta.

    The baseline is the all-zero embedding (Sundararajan et al., 2017, https://arxiv.org/abs/1703.01365), so a token
    whose embedding is already zero gets exactly 0. $x_t$ and every other input of the step are held fixed.
    """
    from captum.attr import IntegratedGradients

    x = call.image_like().float()
    mask = region_mask(region, tuple(x.shape[-2:])).to(x.device)

    def forward(embeddings: torch.Tensor) -> torch.Tensor:
        return (call(x, embeddings) * mask).sum(dim=(1, 2, 3))

    ig = IntegratedGradients(forward)
    with torch.enable_grad():
        attributions, delta = ig.attribute(
            call.condition.float(),
            baselines=torch.zeros_like(call.condition, dtype=torch.float32),
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
            return_convergence_delta=True,
        )
    return attributions[0].sum(dim=-1).detach(), delta.detach()


def _word_effect(call: DenoiserCall, positions: Sequence[int]):
    r"""$f(x) = \langle \hat{x}_0(x, c) - \hat{x}_0(x, c_{\neg w}), \Delta_0 \rangle / \|\Delta_0\|^2$: how much of
    the word's effect on $\hat{x}_0$ at the unperturbed $x_t$ ($\Delta_0$) survives in a perturbed input."""
    c = call.condition
    c_without = c.clone()
    c_without[:, list(positions)] = 0
    both = torch.cat([c, c_without])
    with torch.no_grad():
        x0 = call(call.image_like(), both)
    delta0 = (x0[0] - x0[1]).flatten()
    norm = delta0.pow(2).sum().clamp_min(1e-12)

    def f(x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        with torch.no_grad():
            out = call(torch.cat([x, x]), torch.cat([c.expand(n, -1, -1), c_without.expand(n, -1, -1)]))
        return ((out[:n] - out[n:]).flatten(1) @ delta0) / norm

    return f


def word_deletion_checks(
    call: DenoiserCall,
    layout: PromptLayout,
    word_maps: torch.Tensor,
    n_steps: int = 8,
    n_random: int = 8,
    seed: int = 0,
) -> dict[str, FaithfulnessResult]:
    r"""
    Deletion/insertion of each word's top region against random regions (explain-core's [`deletion_insertion`]), one
    [`FaithfulnessResult`] per word.

    Deleted latent pixels are replaced by fresh noise at the step's noise level ([`diffused_baseline`]); the score is
    the share of the word's effect on $\hat{x}_0$ that survives (see `_word_effect`). A faithful word map loses that
    effect faster than random maps: `deletion_gain > 0`.
    """
    x = call.image_like().float()
    baseline = diffused_baseline(x, call.noise_level, generator=torch.Generator().manual_seed(seed))
    results = {}
    for w, word in enumerate(layout.words):
        positions = layout.word_positions(w)
        heat = F.interpolate(word_maps[w][None, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
        results[word] = deletion_insertion(
            _word_effect(call, positions), x, heat, baseline=baseline, n_steps=n_steps, n_random=n_random, seed=seed
        )
    return results


def word_map_sanity(word_maps: torch.Tensor, random_word_maps: torch.Tensor) -> SanityCheckResult:
    """Adebayo et al.'s model-randomisation check on word maps `[W, H, W]`: SSIM/Spearman vs a re-initialised model."""
    ssim, spearman = map_similarity(word_maps, random_word_maps)
    return SanityCheckResult(
        ssim=float(ssim.mean()),
        spearman=float(spearman.nanmean()),
        ssim_per_map=ssim,
        spearman_per_map=spearman,
        maps=word_maps[None, :, None],
        random_maps=random_word_maps[None, :, None],
    )

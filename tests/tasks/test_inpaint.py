"""Inpainting: known pixels exact with every sampler, a closed-form mixture fill, masks, bad input."""
import warnings

import pytest
import torch

from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.exact import GaussianMixture
from torchdiffusion.tasks import as_mask, inpaint
from torchdiffusion.denoiser.image_conditions import MASK_KINDS, random_masks
from torchdiffusion.tasks.inpaint import repaint_schedule


def _two_tone():
    """Images that are all +0.6 or all -0.6 (plus small noise): the known half decides the hole."""
    return GaussianMixture(torch.stack([torch.full((16,), 0.6), torch.full((16,), -0.6)]), 0.1)


def _hole():
    hole = torch.zeros(1, 1, 4, 4)
    hole[..., 2:, :] = 1
    return hole


@pytest.mark.parametrize("sampler", ["DDIM", "ABM", "DPM++ 2M Karras", "Heun", "Euler a", "ddpm", "UniPC", "LMS",
                                     "PLMS", "DPM++ 3M SDE"])
def test_known_pixels_exact_with_every_sampler(sampler):
    mix = _two_tone()
    img = mix.sample(6, torch.Generator().manual_seed(0), shape=(1, 4, 4))
    r = inpaint(mix, img, _hole(), steps=8, sampler=sampler, resample=2, jump=3)
    known = (_hole() == 0).expand_as(img)
    assert torch.equal(r.images[known], img[known])
    assert bool(torch.isfinite(r.images).all()) and r.images.abs().max() <= 1


def test_fill_follows_the_known_half_and_resampling_helps():
    mix = _two_tone()
    img = mix.sample(120, torch.Generator().manual_seed(0), shape=(1, 4, 4))
    sign = img[:, :, :2].mean((1, 2, 3)).sign()
    plain = inpaint(mix, img, _hole(), steps=20, sampler="ddim", seed=0)
    repaint = inpaint(mix, img, _hole(), steps=20, sampler="ddim", seed=0, resample=4, jump=2)
    hit = [float((r.images[:, :, 2:].mean((1, 2, 3)).sign() == sign).float().mean()) for r in (plain, repaint)]
    assert hit[0] > 0.9 and hit[1] >= hit[0] and hit[1] > 0.98
    assert (plain.nfe, repaint.nfe) == (20, 80)


def test_repaint_schedule_segments():
    sig = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5, 0.0])
    segs = repaint_schedule(sig, jump=2, resample=3)
    assert len(segs) == 9  # 3 segments (2, 2, 1 steps) × 3 passes
    assert [s[1] for s in segs[:3]] == [True, True, False]
    assert torch.equal(segs[-1][0], torch.tensor([0.5, 0.0]))
    with pytest.raises(ConfigError, match="jump"):
        repaint_schedule(sig, 0, 1)
    with pytest.raises(ConfigError, match="resample"):
        repaint_schedule(sig, 1, 0)


def test_mask_validation():
    img = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ConfigError, match="mask is 5×5 but the image is 4×4"):
        as_mask(torch.ones(5, 5), img)
    with pytest.warns(UserWarning, match="not binary"):
        m = as_mask(torch.full((4, 4), 0.7), img)
    assert m.shape == (2, 1, 4, 4) and torch.equal(m, torch.ones(2, 1, 4, 4))
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        as_mask(torch.full((4, 4), 2.0), img)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert as_mask(torch.zeros(4, 4, dtype=torch.bool), img).sum() == 0


def test_wrong_channels_and_size():
    mix = _two_tone()
    with pytest.raises(ConfigError, match="mask"):
        inpaint(mix, torch.zeros(1, 1, 4, 4), torch.ones(3, 3))
    with pytest.raises(ConfigError, match="unknown inpainting method"):
        inpaint(mix, torch.zeros(1, 1, 4, 4), _hole(), method="magic")
    with pytest.raises(ConfigError, match="mask-conditioned model"):
        inpaint(mix, torch.zeros(1, 1, 4, 4), _hole(), method="model")


def test_random_masks_are_binary_and_varied():
    g = torch.Generator().manual_seed(0)
    m = random_masks(64, 28, g)
    assert m.shape == (64, 1, 28, 28) and set(m.unique().tolist()) <= {0.0, 1.0}
    frac = m.mean((1, 2, 3))
    assert 0 < float(frac.min()) and float(frac.max()) < 1 and float(frac.std()) > 0.05
    for kind in MASK_KINDS:
        assert random_masks(3, 16, g, kind).sum() > 0
    assert torch.equal(random_masks(5, 16, torch.Generator().manual_seed(1)),
                       random_masks(5, 16, torch.Generator().manual_seed(1)))

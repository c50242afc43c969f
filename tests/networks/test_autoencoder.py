import math

import pytest
import torch

from torchdiffusion.networks.autoencoder import LAYOUTS, Autoencoder, AutoencoderConfig, DiagonalGaussian
from torchdiffusion.pipeline.folders import load_autoencoder, save_autoencoder
from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.errors import CheckpointError, ConfigError
from torchdiffusion.training.config import VAETrainConfig
from torchdiffusion.training.autoencoder import adaptive_gan_weight, hinge_d_loss, prepare_vae_run
from torchdiffusion.evaluation.metrics import psnr, ssim
from torchdiffusion.data.dataset import split_holdout


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_vae_config(**kw) -> AutoencoderConfig:
    d = dict(image_size=8, in_channels=1, latent_channels=4, base_channels=8, channel_mult=(1, 2, 2),
             norm_groups=4)
    d.update(kw)
    return AutoencoderConfig(**d)


@pytest.mark.parametrize("layout,size,latent", [("f4", 28, 7), ("f4", 64, 16), ("f8", 32, 4)])
@pytest.mark.parametrize("kind", ["kl", "ae"])
def test_encode_decode_shapes(layout, size, latent, kind):
    cfg = AutoencoderConfig(kind=kind, image_size=size, in_channels=3, base_channels=8, channel_mult=LAYOUTS[layout],
                            norm_groups=4)
    assert cfg.latent_shape == (4, latent, latent)
    vae = Autoencoder(cfg)
    x = torch.randn(2, 3, size, size)
    post = vae.encode(x)
    assert post.mean.shape == (2, 4, latent, latent)
    z = post.sample(torch.Generator().manual_seed(0))
    assert vae.decode(z).shape == x.shape
    if kind == "ae":
        assert torch.equal(z, post.mode()) and torch.equal(post.kl(), torch.zeros(2))
    else:
        assert not torch.equal(z, post.mode())


def test_kl_matches_closed_form():
    g = torch.Generator().manual_seed(1)
    mean, logvar = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    post = DiagonalGaussian(mean, logvar)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mean, (0.5 * logvar).exp()),
                                            torch.distributions.Normal(0.0, 1.0)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(post.kl(), ref)
    # one element with μ = 1, σ = 1: ½(1 + 1 - 1 - 0) = ½; the standard normal itself: 0
    assert DiagonalGaussian(torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)).kl().item() == pytest.approx(0.5)
    assert DiagonalGaussian(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)).kl().item() == 0.0


def test_posterior_sample_is_mean_plus_std_noise():
    mean, logvar = torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), math.log(9.0))
    noise = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]])
    torch.testing.assert_close(DiagonalGaussian(mean, logvar).sample(noise=noise), 2.0 + 3.0 * noise)


def test_adaptive_gan_weight_is_the_gradient_norm_ratio():
    # last layer W (2×3), out = W x: ∇_W ‖Wx - y‖² = 2 (Wx - y) xᵀ and ∇_W (-aᵀ W x) = -a xᵀ
    w = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]], requires_grad=True)
    x, y, a = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([0.3, -0.2]), torch.tensor([4.0, -3.0])
    out = w @ x
    rec, g = ((out - y) ** 2).sum(), -(a * out).sum()
    expected = (2 * (out - y)).norm() * x.norm() / (a.norm() * x.norm() + 1e-4)
    torch.testing.assert_close(adaptive_gan_weight(rec, g, w), expected.detach())
    # clamped to the maximum when the GAN gradient vanishes
    assert adaptive_gan_weight(rec, 0 * out.sum(), w, max_weight=10.0).item() == 10.0


def test_hinge_loss():
    assert hinge_d_loss(torch.tensor([2.0, 0.0]), torch.tensor([-3.0, 1.0])).item() == pytest.approx(0.5 * (0.5 + 1.0))


def test_psnr_and_ssim_closed_forms():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(2))
    # a uniform offset of 0.1 on [0, 1] (0.2 on [-1, 1]): MSE 0.01 → 20 dB
    assert psnr(x.clamp(-0.5, 0.5), x.clamp(-0.5, 0.5) + 0.2).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    # constant images: the variance terms cancel, SSIM = (2μxμy + C1)/(μx² + μy² + C1)
    a, b = torch.full((1, 1, 11, 11), 0.0), torch.full((1, 1, 11, 11), -0.5)  # 0.5 and 0.25 on [0, 1]
    c1 = 0.01**2
    assert ssim(a, b).item() == pytest.approx((2 * 0.5 * 0.25 + c1) / (0.25 + 0.0625 + c1), rel=1e-5)


def test_config_errors_and_save_load(tmp_path):
    with pytest.raises(ConfigError, match="not divisible by the downsampling factor f=4"):
        tiny_vae_config(image_size=10).validate()
    with pytest.raises(ConfigError, match="unknown autoencoder kind"):
        tiny_vae_config(kind="vq").validate()
    vae = Autoencoder(tiny_vae_config(scale_factor=0.7))
    with pytest.raises(ConfigError, match=r"expects \(B, 1, H, W\)"):
        vae.encode(torch.zeros(1, 3, 8, 8))
    save_autoencoder(tmp_path / "vae", vae)
    loaded, cfg = load_autoencoder(tmp_path)  # a run folder with vae/ works too
    assert cfg.scale_factor == 0.7 and cfg.channel_mult == (1, 2, 2)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(loaded.encode(x).mean, vae.encode(x).mean)
    with pytest.raises(CheckpointError, match="nothing: no such file or folder"):
        load_autoencoder(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty: not an autoencoder folder"):
        load_autoencoder(tmp_path / "empty")


def _images(n=24, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ImageDataset((torch.rand(n, 1, size, size, generator=g) * 255).to(torch.uint8), name="synthetic")


def test_train_vae_resume_is_exact(tmp_path):
    data = split_holdout(_images(), 0.25)
    model_cfg = tiny_vae_config()

    def cfg(out, steps):
        return VAETrainConfig(out=str(out), steps=steps, batch_size=4, gan=True, disc_start=1, disc_channels=8, disc_layers=1,
                              checkpoint_every=2, log_every=1, sample_every=100, progress=False, scale_images=16)

    full = prepare_vae_run(model_cfg, cfg(tmp_path / "a", 4), data=data)
    full.train()
    part = prepare_vae_run(model_cfg, cfg(tmp_path / "b", 2), data=data)
    part.train()
    resumed = prepare_vae_run(None, cfg(tmp_path / "b", 4), resume=True, data=data)
    assert resumed.step == 2
    resumed.train()
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    for (k, a), (_, b) in zip(full.disc.state_dict().items(), resumed.disc.state_dict().items()):
        assert torch.equal(a, b), k
    import csv
    import json

    rows = list(csv.DictReader(open(tmp_path / "b" / "log.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"] and rows[-1]["d_loss"] != ""
    result = json.loads((tmp_path / "b" / "eval.json").read_text())
    assert result["n"] == 6 and result["compression"] == 64 / 16 and result["scale_factor"] > 0
    with pytest.raises(ConfigError, match="already holds a training run"):
        prepare_vae_run(model_cfg, cfg(tmp_path / "b", 4), data=data)
    with pytest.raises(ConfigError, match="too small for a 3-layer PatchGAN"):
        prepare_vae_run(model_cfg, VAETrainConfig(out=str(tmp_path / "c"), gan=True, disc_layers=3), data=data)


def test_vae_learns_to_reconstruct(tmp_path):
    g = torch.Generator().manual_seed(0)  # smooth images (bilinear 2×2 → 8×8): 16 latent numbers suffice
    smooth = torch.nn.functional.interpolate(torch.rand(48, 1, 2, 2, generator=g), size=8, mode="bilinear")
    data = split_holdout(ImageDataset((smooth * 255).round().to(torch.uint8), name="smooth"), 0.25)
    tr = prepare_vae_run(tiny_vae_config(), VAETrainConfig(out=str(tmp_path), steps=30, batch_size=8, lr=3e-3,
                                                           warmup_steps=5, progress=False, sample_every=1000,
                                                           checkpoint_every=1000, scale_images=16), data=data)
    from torchdiffusion.evaluation.evaluate import evaluate_reconstruction

    before = evaluate_reconstruction(tr.model, data[1])["psnr"]
    tr.train()
    after = evaluate_reconstruction(tr.model, data[1])["psnr"]
    assert after > before + 3

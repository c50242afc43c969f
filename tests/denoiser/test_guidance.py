import pytest
import torch

from torchdiffusion.errors import ConfigError
from torchdiffusion.denoiser.guidance import CFGDenoiser
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.pipeline.pipeline import DiffusionPipeline
from torchdiffusion.sampling.registry import sample_ddim

from helpers import tiny_model_config


@pytest.fixture
def class_model():
    cfg = tiny_model_config(num_classes=3)
    cfg.conditioning, cfg.class_names = "class", ["a", "b", "c"]
    den = build_denoiser(cfg).eval()
    for p in den.network.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return den, cfg


class CountingDenoiser(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls, self.batch_sizes = inner, 0, []

    def forward(self, x, sigma, **cond):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        return self.inner(x, sigma, **cond)


def test_scale_one_equals_conditional_sampling(class_model):
    den, cfg = class_model
    labels = torch.tensor([0, 1, 2, 1])
    sigmas = den.schedule.sigmas_for_steps(5)
    x = sigmas[0] * torch.randn(4, 1, 8, 8)
    plain = sample_ddim(den, x, sigmas, cond={"class_labels": labels})
    guided = sample_ddim(CFGDenoiser(den, {"class_labels": labels}, {"class_labels": torch.full((4,), 3)}, 1.0),
                         x, sigmas)
    assert torch.equal(plain, guided)


def test_guidance_is_one_batched_forward_and_matches_formula(class_model):
    den, _ = class_model
    counting = CountingDenoiser(den)
    c, u = {"class_labels": torch.tensor([0, 2])}, {"class_labels": torch.tensor([3, 3])}
    cfg = CFGDenoiser(counting, c, u, guidance_scale=4.0)
    x, s = torch.randn(2, 1, 8, 8), torch.tensor([1.5, 1.5])
    out = cfg(x, s)
    assert counting.calls == 1 and counting.batch_sizes == [4]
    d_c, d_u = den(x, s, **c), den(x, s, **u)
    assert torch.allclose(out, d_u + 4.0 * (d_c - d_u), atol=1e-5)


def test_guidance_rescale_matches_conditional_std(class_model):
    den, _ = class_model
    c, u = {"class_labels": torch.tensor([0, 2])}, {"class_labels": torch.tensor([3, 3])}
    x, s = torch.randn(2, 1, 8, 8), torch.tensor([2.0, 2.0])
    out = CFGDenoiser(den, c, u, guidance_scale=6.0, guidance_rescale=1.0)(x, s)
    eps_c = (x - den(x, s, **c)) / 2.0
    eps = (x - out) / 2.0
    assert torch.allclose(eps.std(dim=(1, 2, 3)), eps_c.std(dim=(1, 2, 3)), rtol=1e-4)
    with pytest.raises(ConfigError):
        CFGDenoiser(den, c, u, guidance_rescale=1.5)


def test_pipeline_class_labels(class_model):
    den, cfg = class_model
    pipe = DiffusionPipeline(den, cfg)
    a = pipe.generate(n=3, steps=4, class_labels="b", guidance_scale=3.0, progress=False)
    b = pipe.generate(n=3, steps=4, class_labels=[1, 1, 1], guidance_scale=3.0, progress=False)
    assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="out of range"):
        pipe.generate(n=1, steps=2, class_labels=3, progress=False)
    with pytest.raises(ConfigError, match="unknown class"):
        pipe.generate(n=1, steps=2, class_labels="zebra", progress=False)


def test_class_label_to_unconditional_model(tiny_config):
    pipe = DiffusionPipeline(build_denoiser(tiny_config), tiny_config)
    with pytest.raises(ConfigError, match="not class-conditional"):
        pipe.generate(n=1, steps=2, class_labels=1, progress=False)


def test_seed_gives_same_image_whatever_the_batch(class_model):
    den, cfg = class_model
    pipe = DiffusionPipeline(den, cfg)
    a = pipe.generate(n=4, steps=3, sampler="ddpm", seed=5, batch_size=4, class_labels=1, progress=False)
    b = pipe.generate(n=4, steps=3, sampler="ddpm", seed=5, batch_size=1, class_labels=1, progress=False)
    assert torch.allclose(a, b, atol=1e-5)

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


# --- guidance interval (Kynkäänniemi et al. 2024) -------------------------------------------
class _Recorder(torch.nn.Module):
    """An exact toy denoiser whose output depends on the class, recording each call's batch size."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def forward(self, x, sigma, class_labels=None):
        self.batches.append(x.shape[0])
        shift = class_labels.float().reshape(-1, 1, 1, 1)
        return x / (1 + torch.as_tensor(sigma).reshape(-1, 1, 1, 1) ** 2) + shift


def _cfg(interval):
    from torchdiffusion.denoiser.guidance import CFGDenoiser

    rec = _Recorder()
    return rec, CFGDenoiser(rec, {"class_labels": torch.tensor([1, 2])}, {"class_labels": torch.tensor([5, 5])},
                            3.0, guidance_interval=interval)


def test_guidance_interval_outside_is_the_conditional_prediction_in_one_half_batch():
    x = torch.randn(2, 1, 4, 4)
    rec, d = _cfg((0.5, 2.0))
    plain = _Recorder()(x, torch.tensor([5.0, 5.0]), class_labels=torch.tensor([1, 2]))
    assert torch.equal(d(x, torch.tensor(5.0)), plain)
    assert torch.equal(d(x, torch.tensor(0.5)), _Recorder()(x, torch.tensor([0.5, 0.5]),
                                                             class_labels=torch.tensor([1, 2])))  # lo is open
    assert rec.batches == [2, 2]
    full_rec, full = _cfg(None)
    for s in (2.0, 1.0):  # hi is closed
        assert torch.allclose(d(x, torch.tensor(s)), full(x, torch.tensor(s)))
    assert rec.batches[2:] == [4, 4]
    # per-sample σ straddling an edge: each sample as if alone
    sig = torch.tensor([1.0, 5.0])
    mixed = d(x, sig)
    assert torch.allclose(mixed[:1], full(x, torch.tensor([1.0, 1.0]))[:1])
    assert torch.allclose(mixed[1:], plain[1:])
    # (0, inf) is guidance everywhere
    _, everywhere = _cfg((0.0, float("inf")))
    assert torch.allclose(everywhere(x, torch.tensor(7.0)), full(x, torch.tensor(7.0)))


@pytest.mark.parametrize("bad", ["1", "5,1", "nan,2", "-1,2", "a,b", (1, 2, 3), 3.0])
def test_bad_guidance_interval_is_refused(bad):
    from torchdiffusion.denoiser.guidance import check_guidance_interval

    with pytest.raises(ConfigError, match="must be two noise levels"):
        check_guidance_interval(bad)


def test_guidance_interval_in_generate(tiny_config):
    from torchdiffusion.denoiser.guidance import check_guidance_interval

    assert check_guidance_interval("0.3, inf") == (0.3, float("inf"))
    cfg = tiny_config
    cfg.unet.num_classes, cfg.conditioning = 3, "class"
    pipe = DiffusionPipeline(build_denoiser(cfg).eval(), cfg)
    a = pipe.generate(n=3, steps=5, progress=False, guidance_interval=(0.0, float("inf")))
    b = pipe.generate(n=3, steps=5, progress=False)
    c = pipe.generate(n=3, steps=5, progress=False, guidance_interval=(1e6, 1e7))  # never guided
    d = pipe.generate(n=3, steps=5, progress=False, guidance_scale=1.0)
    assert torch.allclose(a, b) and torch.allclose(c, d, atol=1e-6)
    with pytest.raises(ConfigError, match="guidance interval"):
        pipe.generate(n=3, steps=5, progress=False, guidance_interval=(2.0, 1.0))

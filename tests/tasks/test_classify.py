"""The diffusion classifier (tasks/classify.py) against an exact class-conditional denoiser, and
the editing tasks' use of it on a class model given no class."""
import pytest
import torch

from torchdiffusion.sampling.registry import EDIT_SAMPLER  # the tasks' sampler; they guide every step

from helpers import tiny_model_config
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.denoiser.image_conditions import downsample
from torchdiffusion.pipeline import DiffusionPipeline
from torchdiffusion.tasks import img2img, inpaint, interpolate_conditions, interpolate_seeds, upscale
from torchdiffusion.tasks.classify import class_errors, describe_classes, infer_class
from torchdiffusion.tasks.interpolate import class_walk_weights

K, S = 4, 0.15  # classes; each an isotropic Gaussian N(μ_c, S² I) of 8×8 images


def _means():
    g = torch.Generator().manual_seed(3)
    return (torch.rand(K, 1, 8, 8, generator=g) * 1.6 - 0.8)


class ExactClassDenoiser(torch.nn.Module):
    """D(x, σ, c) = μ_c + S²/(S² + σ²)(x − μ_c): the exact posterior mean of class c's Gaussian."""

    def __init__(self, means):
        super().__init__()
        self.means = means

    def forward(self, x, sigma, class_labels=None):
        s2 = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1) ** 2
        mu = self.means[class_labels]
        return mu + S * S / (S * S + s2) * (x - mu)


def _draw(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K
    return _means()[labels] + S * torch.randn(n, 1, 8, 8, generator=g), labels


def test_exact_classifier_recovers_the_class_from_a_clean_a_masked_and_a_low_res_image():
    d = ExactClassDenoiser(_means())
    y, labels = _draw(40)
    assert torch.equal(class_errors(d, y, K).argmin(1), labels)
    known = torch.ones(1, 1, 8, 8)
    known[..., 4:, :] = 0  # the bottom half unknown: the error is counted over the top half only
    hole = y.clone()
    hole[..., 4:, :] = 1.0  # whatever the hole holds
    assert torch.equal(class_errors(d, hole, K, known=known).argmin(1), labels)
    assert torch.equal(class_errors(d, downsample(y, 2), K, factor=2).argmin(1), labels)


def test_class_errors_are_paired_and_seeded():
    d = ExactClassDenoiser(_means())
    y, _ = _draw(6)
    a, b = class_errors(d, y, K, seed=5), class_errors(d, y, K, seed=5)
    assert torch.equal(a, b)
    # image i's noise does not depend on the batch it is in
    assert torch.equal(class_errors(d, y[:3], K, seed=5), a[:3])
    assert not torch.equal(class_errors(d, y, K, seed=6), a)


@pytest.fixture(scope="module")
def class_pipe():
    cfg = tiny_model_config(num_classes=3)
    cfg.conditioning, cfg.class_names = "class", ["zero", "one", "two"]
    torch.manual_seed(0)
    d = build_denoiser(cfg)
    torch.nn.init.normal_(d.network.out_conv.weight, std=0.1)
    torch.nn.init.normal_(d.network.class_emb.weight, std=1.0)
    return DiffusionPipeline(d, cfg)


def test_tasks_on_a_class_model_infer_the_class_and_say_so(class_pipe):
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    labels, probs = infer_class(class_pipe, x)
    assert labels.shape == (2,) and torch.allclose(probs.sum(1), torch.ones(2))
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:, :] = 1
    r = inpaint(class_pipe, x, mask, steps=2)
    assert len(r.info["class_inferred"]) == 2 and all(0 <= c < 3 for c in r.info["class_inferred"])
    assert "class_inferred" in upscale(class_pipe, downsample(x, 2), steps=2).info
    assert "class_inferred" in img2img(class_pipe, x, 0.5, steps=2).info
    given = inpaint(class_pipe, x, mask, steps=2, class_labels=1)
    assert "class_inferred" not in given.info  # a given class is used as is


def test_describe_classes():
    names = ["zero", "one", "two"]
    assert describe_classes(torch.tensor([2]), names) == "two"
    assert describe_classes(torch.tensor([1, 2, 1]), names) == "2 × one, 1 × two"


def test_one_hot_class_weights_equal_integer_labels(class_pipe):
    net = class_pipe.denoiser.network.eval()
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 50, 90])
    labels = torch.tensor([0, 2, 3])  # 3 = the null class
    onehot = torch.nn.functional.one_hot(labels, 4).float()
    with torch.no_grad():
        assert torch.allclose(net(x, t, class_labels=labels), net(x, t, class_labels=onehot), atol=1e-5)


def test_class_walks_interpolate_the_embedding_and_their_ends_are_generate(class_pipe):
    w = class_walk_weights(class_pipe, 0, 2, torch.linspace(0, 1, 5, dtype=torch.float64))
    assert w[0, 0] == 1 and w[-1, 2] == 1 and (w[:, 3] == 0).all() and (w.sum(1) >= 1 - 1e-6).all()
    e = class_pipe.denoiser.network.class_emb.weight.detach()
    norms = (w @ e).norm(dim=1)  # the mixed embedding keeps the interpolated norm
    ts = torch.linspace(0, 1, 5)
    assert torch.allclose(norms, (1 - ts) * e[0].norm() + ts * e[2].norm(), rtol=1e-4)
    r = interpolate_conditions(class_pipe, {"class_labels": 0}, {"class_labels": 2}, 3, seed=4, steps=3)
    ends = [class_pipe.generate(n=1, steps=3, seed=4, class_labels=c, progress=False, sampler=EDIT_SAMPLER, guidance_interval="all") for c in (0, 2)]
    assert torch.allclose(r.images[0], ends[0][0].clamp(-1, 1), atol=1e-4)
    assert torch.allclose(r.images[-1], ends[1][0].clamp(-1, 1), atol=1e-4)
    walk = interpolate_seeds(class_pipe, 1, 2, 3, steps=3, class_labels=(1, 2))
    first = class_pipe.generate(n=1, steps=3, seed=1, class_labels=1, progress=False, sampler=EDIT_SAMPLER, guidance_interval="all")
    assert torch.allclose(walk.images[0], first[0].clamp(-1, 1), atol=1e-4)
    inferred = interpolate_seeds(class_pipe, 1, 2, 3, steps=3)
    assert len(inferred.info["class_inferred"]) == 2

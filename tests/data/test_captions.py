import random
import re

import pytest
import torch

from torchdiffusion.data.captions import (DIGIT_WORDS, HELDOUT_TEMPLATES, TRAIN_TEMPLATES, caption_dataset,
                                     heldout_prompts, mnist_caption)
from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.errors import DataError


def _names_digit(caption: str, label: int) -> bool:
    """The caption names ``label`` (as word or numeral) and no other digit."""
    words = set(re.findall(r"[a-z]+|\d", caption.lower()))
    named = {i for i, w in enumerate(DIGIT_WORDS) if w in words} | {int(w) for w in words if w.isdigit()}
    return named == {label}


def test_template_counts_and_disjoint():
    assert len(DIGIT_WORDS) == 10 and DIGIT_WORDS[7] == "seven"
    assert len(TRAIN_TEMPLATES) >= 12
    assert len(set(TRAIN_TEMPLATES)) == len(TRAIN_TEMPLATES)
    assert not set(TRAIN_TEMPLATES) & set(HELDOUT_TEMPLATES)
    # Disjoint after filling in too, for every digit.
    for label in range(10):
        train = {t.format(word=DIGIT_WORDS[label], num=label) for t in TRAIN_TEMPLATES}
        assert not train & set(heldout_prompts(label))
    # Both word and numeral forms are used.
    assert any("{word}" in t for t in TRAIN_TEMPLATES) and any("{num}" in t for t in TRAIN_TEMPLATES)


def test_every_caption_names_the_right_digit():
    rng = random.Random(0)
    seen = set()
    for label in range(10):
        for _ in range(60):
            cap = mnist_caption(label, rng)
            assert _names_digit(cap, label), cap
            seen.add(cap)
        for prompt in heldout_prompts(label):
            assert _names_digit(prompt, label), prompt
    assert len(seen) >= 10 * 12  # varied: most templates get picked
    assert "a handwritten seven" in seen and "the digit 7" in seen


def test_mnist_caption_is_deterministic_and_rejects_bad_labels():
    a = [mnist_caption(3, random.Random(5)) for _ in range(3)]
    assert len(set(a)) == 1
    for bad in (-1, 10, 2.5, "x"):
        with pytest.raises(DataError):
            mnist_caption(bad, random.Random(0))


def test_caption_dataset():
    labels = torch.tensor([0, 7, 7, 3, 9])
    ds = ImageDataset(torch.zeros(5, 1, 4, 4, dtype=torch.uint8), labels,
                      ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"], name="m")
    caps = caption_dataset(ds, seed=1)
    assert len(caps) == 5
    assert all(_names_digit(c, int(lab)) for c, lab in zip(caps, labels))
    assert caps == caption_dataset(ds, seed=1)
    # Class names as folder numerals in another order still map to the right digit.
    ds2 = ImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), ["5", "2"], name="f")
    caps2 = caption_dataset(ds2)
    assert _names_digit(caps2[0], 5) and _names_digit(caps2[1], 2)
    with pytest.raises(DataError):
        caption_dataset(ImageDataset(torch.zeros(1, 1, 4, 4, dtype=torch.uint8)))


def test_caption_dataset_on_bundled_mnist():
    from torchdiffusion.data.mnist import load_mnist

    ds = load_mnist(8, split="test")
    caps = caption_dataset(ds)
    assert len(caps) == len(ds)
    assert all(_names_digit(c, int(lab)) for c, lab in zip(caps[:200], ds.labels[:200]))

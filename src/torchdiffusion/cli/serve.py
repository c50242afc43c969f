"""``torchdiffusion serve``: the local web UI (needs the ``ui`` extra: ``pip install -e '.[ui]'``)."""
from __future__ import annotations

from torchdiffusion.cli.help import HelpFormatter, add_device_options
from pathlib import Path


def add_serve_command(sub) -> None:
    p = sub.add_parser("serve", help="local web UI: generate and edit images in a browser",
                       formatter_class=HelpFormatter,
                       description="Serve a Gradio web app on HOST:PORT (localhost by default) with tabs for "
                                   "Generate, img2img, Inpaint, Upscale, Denoise, Interpolate and PNG info. "
                                   "Requests run one at a time through a queue; the limits below are enforced "
                                   "on the server and shown on the page. See docs/ui.md.")
    p.add_argument("--checkpoint", required=True, help="the model shown first: a model, run or checkpoint folder")
    p.add_argument("--models-dir", default=None,
                   help="folder whose model sub-folders appear in the model picker (default: the checkpoint's "
                        "parent folder); no model outside it can be requested")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=7860, help="TCP port of the web UI")
    p.add_argument("--outputs", default="outputs", help="where generated PNGs (with their parameters) are written")
    add_device_options(p)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is fastest for tiny models on a busy machine)")
    p.add_argument("--max-steps", type=int, default=150, help="server limit on sampler steps")
    p.add_argument("--max-batch", type=int, default=8, help="server limit on images per request")
    p.add_argument("--max-upload-side", type=int, default=4096, help="server limit on an uploaded image's side (px)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="server limit on an upload's file size")
    p.add_argument("--max-queue", type=int, default=64, help="waiting requests before new ones are refused")
    p.set_defaults(func=cmd_serve)


def build_backend(args):
    from torchdiffusion.errors import ConfigError
    from torchdiffusion.ui.backend import Backend
    from torchdiffusion.ui.limits import UILimits
    from torchdiffusion.ui.models import ModelLibrary

    ckpt = Path(args.checkpoint).expanduser()
    if not ckpt.exists():
        raise ConfigError(f"--checkpoint {ckpt}: no such folder")
    models_dir = Path(args.models_dir) if args.models_dir else ckpt.resolve().parent
    limits = UILimits(max_steps=args.max_steps, max_batch=args.max_batch, max_upload_side=args.max_upload_side,
                      max_upload_pixels=args.max_upload_side ** 2, max_upload_mb=args.max_upload_mb,
                      max_queue=args.max_queue)
    return Backend(ModelLibrary(models_dir, ckpt, device=args.device, precision=args.precision), limits, outputs=args.outputs)


def cmd_serve(args) -> int:
    from torchdiffusion.errors import ConfigError

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError("torchdiffusion serve needs Gradio: pip install -e '.[ui]'") from None
    from torchdiffusion.ui.app import launch

    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise ConfigError(f"--threads must be ≥ 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    backend = build_backend(args)
    print(f"torchdiffusion serve: http://{args.host}:{args.port}  (models: {backend.library.root}, "
          f"outputs: {backend.outputs})", flush=True)
    launch(backend, host=args.host, port=args.port, block=True)
    return 0

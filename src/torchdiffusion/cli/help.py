"""The CLI's help format: every option's default shown once."""
from __future__ import annotations

import argparse


PRECISION_HELP = ("number format of the network: auto = bf16 autocast where the CPU has native bf16 (AVX512-BF16/AMX) "
                  "or on a bf16 GPU, else fp32; fp16 needs CUDA (docs/performance.md)")

def _interval_text() -> str:
    from torchdiffusion.denoiser.guidance import interval_text
    from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE_INTERVAL

    return interval_text(DEFAULT_GUIDANCE_INTERVAL)


DEFAULT_INTERVAL_TEXT = _interval_text()
INTERVAL_HELP = ("guide only for noise levels LO < σ ≤ HI, plain conditional (half the network work) elsewhere "
                 "(Kynkäänniemi et al. 2024); 'all' guides every step; HI may be inf")


def add_device_options(p) -> None:
    """``--device`` and ``--precision``, the same on every command that runs a trained model."""
    from torchdiffusion.networks.precision import PRECISIONS

    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after an option's help, unless the help already states its default
    (e.g. "default: 28 for mnist, else 32") or there is none to show (None, a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) \
                or not action.option_strings or action.nargs == 0:
            return text
        return super()._get_help_string(action)

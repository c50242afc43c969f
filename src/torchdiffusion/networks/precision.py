"""The number format a network runs in: fp32, or bf16/fp16 autocast (mixed precision).

Under ``torch.autocast`` matrix products and convolutions run in the low-precision type while
reductions, norms and softmax stay in fp32 (PyTorch AMP); the weights stay fp32. On CPUs with
AVX512-BF16 or AMX bf16 matrix products run at about twice the fp32 rate, on CPUs without them bf16
is emulated and slower, so ``"auto"`` picks bf16 only where the hardware has it (Micikevicius et
al. 2018, "Mixed Precision Training"; Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep
Learning Training"). fp16 needs CUDA (its narrow range needs a loss scaler in training).
"""
from __future__ import annotations

import logging

import torch

from torchdiffusion.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
log = logging.getLogger("torchdiffusion")
_SAID: set[str] = set()


def bf16_supported() -> bool:
    """True when this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_precision(precision, device: str = "cpu") -> str:
    """``precision`` as one of :data:`PRECISIONS`, or a :class:`ConfigError` naming them."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose auto, fp32, bf16 or fp16")
    if precision == "fp16" and not str(device).startswith("cuda"):
        raise ConfigError("precision fp16 needs a CUDA device (on a CPU use bf16 or fp32)")
    return precision


def resolve_precision(precision: str, device: str = "cpu", say: bool = False) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``, or None for plain fp32.

    ``"auto"``: bf16 on a CUDA GPU that supports it and on a CPU with native bf16, else fp32;
    ``say``: log once per process when auto stays fp32 on a CPU without bf16 (so a user knows
    why generation is slower than on a bf16 machine)."""
    check_precision(precision, device)
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if str(device).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if bf16_supported():
        return torch.bfloat16
    if say and "no-bf16" not in _SAID:
        _SAID.add("no-bf16")
        log.info("precision auto: this CPU has no native bf16 (AVX512-BF16/AMX), so the network runs in fp32")
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """'fp32', 'bf16' or 'fp16' for an autocast dtype (None = fp32)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]

#!/usr/bin/env python
"""CPU throughput: torchdiffusion's U-Net against diffusers' ``UNet2DModel`` (issue 8).

Both networks are built with the same anatomy (ADM: scale-shift ResBlocks, GroupNorm,
multi-head self-attention at the chosen resolutions, skip concatenation, nearest
upsampling + 3×3 conv, stride-2 3×3 conv downsampling); the script checks that parameter
counts and FLOPs per image (``torch.utils.flop_counter.FlopCounterMode``) agree before it
times anything. Every task is timed for all variants in the same process, alternating
between them step by step (the order rotates every round), and reports medians of the
repeated steps after a warm-up, so the ratios stay meaningful on a machine shared with
other jobs; the absolute numbers do not.

Tasks (images/s):

* ``train``   one optimizer step: ``diffusion_loss`` (v-prediction, Min-SNR) forward +
              backward + grad-clip + AdamW, batch 32 and 128 (unconditional networks);
* ``forward`` one network forward in ``inference_mode``, batch 64 and 256 (class-conditional);
* ``dpm``     a full 20-step DPM++ 2M run with classifier-free guidance (one batched forward
              of 2B per step through ``Denoiser`` + ``CFGDenoiser``), batch 64 and 256. The
              solver is implemented here once (DPM-Solver++(2M), Lu et al. 2022, Alg. 2 in
              the σ-view) and driven one step at a time so the variants alternate per step;
              when ``torchdiffusion.samplers.sample_dpmpp_2m`` exists the script checks that
              it gives the same result.

Variants: ``ours``/``diffusers`` × fp32 (diffusers' default use) / bf16 autocast (what our
trainer does on CPUs with AVX512-BF16 or AMX) / + channels_last; ``proto`` is a
prototype of U-Net changes considered in docs/performance.md, built here as subclasses
(same weights, same FLOPs, outputs checked against the original; ``--ablation`` times its
attention and ResBlock parts separately: the attention part helps, the ResBlock part does
not); ``--compile`` adds
``torch.compile`` variants of both. The machine's peak is measured in the same run (large
fp32/bf16 matmul and 3×3 conv) and each variant's achieved GFLOP/s is given as a
fraction of the peak of its compute dtype.

    python benchmarks/throughput.py                  # MNIST model, all tasks (~3 min on 2 idle cores)
    python benchmarks/throughput.py --config all     # + a 3×32×32, 64/128/128 model
    python benchmarks/throughput.py --quick          # smoke test (tiny batches, 1 repeat)
    python benchmarks/throughput.py --threads 1      # steadier on a machine shared with other jobs
    python benchmarks/throughput.py --ablation       # + the prototype's parts separately
    python benchmarks/throughput.py --profile        # + torch.profiler op tables

Results and analysis: docs/performance.md.

Needs ``diffusers`` (``pip install diffusers``).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from torchdiffusion.denoiser.guidance import CFGDenoiser
from torchdiffusion.denoiser.losses import diffusion_loss
from torchdiffusion.diffusion.parameterization import Denoiser
from torchdiffusion.diffusion.schedules import ScheduleConfig
from torchdiffusion.networks.unet import AttentionBlock, ResBlock, UNet, UNetConfig, count_parameters

aten = torch.ops.aten

CONFIGS = {
    # the default MNIST model of the package
    "mnist": UNetConfig(image_size=28, in_channels=1, base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
                        attention_resolutions=(7,), head_channels=32, norm_groups=8),
    # a larger RGB model: 4× the width, attention at two resolutions
    "cifar": UNetConfig(image_size=32, in_channels=3, base_channels=64, channel_mult=(1, 2, 2), num_res_blocks=1,
                        attention_resolutions=(16, 8), head_channels=32, norm_groups=8),
}
NUM_CLASSES = 10
# the 20-step runs at batch > 64 (and on the larger model) are the expensive part: by default
# only these variants run them (``--full`` runs every variant on every task)
HEADLINE = ("ours bf16", "diffusers bf16", "diffusers fp32")
GUIDANCE_SCALE = 3.0
DPM_STEPS = 20


# ------------------------------------------------------------------------------------------
# FLOP counting
# ------------------------------------------------------------------------------------------

def _flop_mapping() -> dict:
    """FlopCounterMode has no formula for the CPU flash-attention kernel that
    ``scaled_dot_product_attention`` dispatches to on CPU, so diffusers' attention (contiguous
    q/k/v → flash kernel) would count 0 while ours (strided → math path, bmm) counts; give it
    the standard SDPA formulas so both are counted alike."""
    mapping = {}
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    def fwd_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:  # called with shapes
        return flop_counter.sdpa_flop_count(q, k, v)

    def bwd_flops(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_backward_flop_count(grad_out, q, k, v)

    if fwd is not None:
        mapping[fwd] = fwd_flops
    if bwd is not None:
        mapping[bwd] = bwd_flops
    return mapping


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False, custom_mapping=_flop_mapping()) as counter:
        fn()
    return counter.get_total_flops()


# ------------------------------------------------------------------------------------------
# diffusers' UNet2DModel configured like ours
# ------------------------------------------------------------------------------------------

def diffusers_kwargs(cfg: UNetConfig) -> dict:
    """UNet2DModel arguments that reproduce our U-Net's depth, widths and attention.

    Down path: one ``(Attn)DownBlock2D`` per level with ``num_res_blocks`` ResNets and a
    stride-2 conv (padding 1, like ours: 28 → 14 → 7); up path: ``layers_per_block + 1``
    ResNets per level (as ours) and nearest ×2 + 3×3 conv. ``resnet_time_scale_shift=
    "scale_shift"`` is ADM's norm·(1+scale)+shift; ``attn_norm_num_groups`` gives the middle
    block's attention the GroupNorm that ours has (diffusers drops it by default with
    scale_shift). ``num_class_embeds`` = classes + 1 (our null class for CFG).
    """
    res = cfg.resolutions
    attn = [r in cfg.attention_resolutions for r in res]
    kw = dict(
        sample_size=cfg.image_size,
        in_channels=cfg.in_channels,
        out_channels=cfg.out_channels or cfg.in_channels,
        block_out_channels=tuple(cfg.base_channels * m for m in cfg.channel_mult),
        layers_per_block=cfg.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        norm_num_groups=cfg.norm_groups,
        attn_norm_num_groups=cfg.norm_groups,
        attention_head_dim=cfg.head_channels,
        resnet_time_scale_shift="scale_shift",
        dropout=cfg.dropout,
    )
    if cfg.num_classes:
        kw["num_class_embeds"] = cfg.num_classes + 1
    return kw


class DiffusersNet(nn.Module):
    """``UNet2DModel`` behind our network signature ``net(x_t, t, class_labels=None)``."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        from diffusers import UNet2DModel

        self.num_classes = cfg.num_classes
        self.unet = UNet2DModel(**diffusers_kwargs(cfg))

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None) -> Tensor:
        if self.num_classes and class_labels is None:
            class_labels = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
        return self.unet(x, t, class_labels=class_labels, return_dict=False)[0]


# ------------------------------------------------------------------------------------------
# prototype of the proposed U-Net changes (docs/performance.md); same weights, same FLOPs
# ------------------------------------------------------------------------------------------

class ProtoResBlock(ResBlock):
    """ResBlock with (1) GroupNorm's affine folded into the scale-shift, so norm2 → scale →
    shift is one GroupNorm without affine + one ``addcmul`` instead of GroupNorm + mul + add
    (one pass over the activation instead of two), and (2) without autograd (sampling) the
    SiLUs and the residual add done in place (no fresh activation-sized buffers).

    Measured (docs/performance.md): 3-5% *slower* than ``ResBlock`` on this CPU, since the
    broadcasting bf16 ``addcmul`` kernel costs more than the mul + add it replaces; kept so
    that the negative result can be reproduced (``--ablation``)."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        inplace = not torch.is_grad_enabled()
        h = self.conv1(F.silu(self.norm1(x), inplace=inplace))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        n2 = self.norm2
        h = F.group_norm(h, n2.num_groups, None, None, n2.eps)
        g = 1 + scale
        a = (n2.weight[:, None, None] * g).to(h.dtype)
        b = (n2.bias[:, None, None] * g + shift).to(h.dtype)
        h = torch.addcmul(b, h, a)
        h = self.conv2(self.dropout(F.silu(h, inplace=inplace)))
        skip = self.skip(x)
        return h.add_(skip) if inplace else skip + h


class ProtoAttentionBlock(AttentionBlock):
    """Without autograd (sampling): q, k, v with a contiguous last (head-channel) dimension,
    so that ``scaled_dot_product_attention`` on CPU takes the fused flash kernel instead of
    the math fallback (the strided ``_split`` view in ``AttentionBlock`` forces the fallback:
    it materialises the attention matrix, runs isneginf/all/where/softmax as separate passes
    and copies q/k/v). Same channel→head mapping as ``AttentionBlock._split``. With autograd
    (training) it keeps the original path: at these sequence lengths (49-256 tokens) the
    CPU flash kernel's backward is slower than the math path's bmm backward (measured:
    diffusers, which always takes the flash kernel, spends ~11% of its training step there)."""

    def forward(self, x: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
        if torch.is_grad_enabled() or (self.cross is not None and context is not None):
            return super().forward(x, context, context_mask)
        b, c, hgt, wid = x.shape
        d = c // self.heads
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, d, hgt * wid).transpose(3, 4)
        q, k, v = (t.contiguous() for t in qkv.unbind(1))  # (B, heads, N, d), d contiguous
        h = F.scaled_dot_product_attention(q, k, v)
        h = h.transpose(2, 3).reshape(b, c, hgt, wid)
        return self.proj(h).add_(x)


def make_proto(model: UNet, resblocks: bool = True, attention: bool = True) -> UNet:
    """A copy of ``model`` whose blocks run the prototype forwards (same weights)."""
    proto = copy.deepcopy(model)
    for m in proto.modules():
        if type(m) is ResBlock and resblocks:
            m.__class__ = ProtoResBlock
        elif type(m) is AttentionBlock and attention:
            m.__class__ = ProtoAttentionBlock
    return proto


# ------------------------------------------------------------------------------------------
# DPM++ 2M, one step at a time
# ------------------------------------------------------------------------------------------

class DPMpp2M:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2) in the σ-view, λ = -log σ:

        x_{i+1} = (σ_{i+1}/σ_i) x_i - (e^{-h_i} - 1) D_i',   h_i = λ_{i+1} - λ_i,
        D_i' = (1 + 1/(2 r_i)) D_i - 1/(2 r_i) D_{i-1},     r_i = h_{i-1}/h_i,

    first-order (D_i' = D_i) on the first step, and x = D on the final step to σ = 0. Holds
    its own state so several runs can be advanced alternately."""

    def __init__(self, denoiser, x: Tensor, sigmas: Tensor):
        self.denoiser, self.x, self.sigmas = denoiser, x, sigmas.to(torch.float64)
        self.i, self.old = 0, None

    @property
    def done(self) -> bool:
        return self.i >= len(self.sigmas) - 1

    def step(self) -> None:
        i, s, s_next = self.i, self.sigmas[self.i], self.sigmas[self.i + 1]
        x = self.x
        denoised = self.denoiser(x, torch.full((x.shape[0],), float(s), dtype=x.dtype))
        if s_next == 0:
            x = denoised
        else:
            h = float(s.log() - s_next.log())
            if self.old is None:
                d = denoised
            else:
                r = float(self.sigmas[i - 1].log() - s.log()) / h
                d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * self.old
            x = float(s_next / s) * x - math.expm1(-h) * d
        self.x, self.old, self.i = x, denoised, i + 1


# ------------------------------------------------------------------------------------------
# variants and tasks
# ------------------------------------------------------------------------------------------

@dataclass
class Variant:
    name: str
    family: str  # "ours" | "diffusers"
    bf16: bool
    channels_last: bool
    build: Callable[[bool], nn.Module]  # build(conditional) -> network
    compiled: bool = False
    kinds: tuple[str, ...] = ("train", "forward", "dpm")  # tasks this variant is timed on

    @property
    def dtype(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

    def prepare(self, net: nn.Module) -> nn.Module:
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if self.compiled:
            net = torch.compile(net)
        return net

    def input(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def randomize_zero_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Ours zero-initialises output convs (conv2, proj, out_conv) like ADM; give them small
    random values so neither network runs on exact zeros (a trained model has none)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not bool(p.any()):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def make_variants(cfg: UNetConfig, use_compile: bool, variants: list[str] | None,
                  ablation: bool = False) -> list[Variant]:
    def ours(cond: bool) -> nn.Module:
        torch.manual_seed(0)
        c = copy.deepcopy(cfg)
        c.num_classes = NUM_CLASSES if cond else None
        return randomize_zero_init(UNet(c))

    def proto(cond: bool) -> nn.Module:
        return make_proto(ours(cond))

    def diff(cond: bool) -> nn.Module:
        torch.manual_seed(0)
        c = copy.deepcopy(cfg)
        c.num_classes = NUM_CLASSES if cond else None
        return DiffusersNet(c)

    no_dpm = ("train", "forward")  # channels_last loses (GroupNorm's channels-last bf16 kernel);
    vs = [                          # keep the 20-step runs to the variants that matter
        Variant("ours fp32", "ours", False, False, ours),
        Variant("ours bf16", "ours", True, False, ours),
        Variant("ours bf16 CL", "ours", True, True, ours, kinds=no_dpm),
        Variant("proto bf16", "ours", True, False, proto),
        Variant("diffusers fp32", "diffusers", False, False, diff),
        Variant("diffusers bf16", "diffusers", True, False, diff),
        Variant("diffusers bf16 CL", "diffusers", True, True, diff, kinds=no_dpm),
    ]
    if ablation:  # the prototype's parts one at a time, and bf16 weights for sampling
        vs += [Variant("proto-resblock bf16", "ours", True, False, lambda c: make_proto(ours(c), attention=False)),
               Variant("proto-attention bf16", "ours", True, False, lambda c: make_proto(ours(c), resblocks=False)),
               Variant("proto bf16 CL", "ours", True, True, proto),
               Variant("ours bf16 weights", "ours", True, False,
                       lambda c: ours(c).to(torch.bfloat16), kinds=("forward", "dpm"))]
    if use_compile:
        vs += [Variant("ours bf16 compiled", "ours", True, False, ours, compiled=True),
               Variant("proto bf16 compiled", "ours", True, False, proto, compiled=True),
               Variant("diffusers bf16 compiled", "diffusers", True, False, diff, compiled=True)]
    if variants:
        vs = [v for v in vs if v.name in variants]
    return vs


def partner(v: Variant, variants: list[Variant]) -> Variant | None:
    """The like-for-like diffusers variant: same precision, layout and compilation."""
    for w in variants:
        if (w.family == "diffusers" and w.bf16 == v.bf16 and w.channels_last == v.channels_last
                and w.compiled == v.compiled):
            return w
    return None


class Task:
    """A task = a batch size and a per-variant step function built lazily."""

    def __init__(self, kind: str, batch: int):
        self.kind, self.batch = kind, batch

    @property
    def label(self) -> str:
        return f"{self.kind} b{self.batch}"

    def images_per_step(self) -> int:
        return self.batch


def make_step(task: Task, v: Variant, cfg: UNetConfig, schedule) -> tuple[Callable[[], None], Callable[[], None]]:
    """(warm-up, step) closures for one variant on one task."""
    b, shape = task.batch, (task.batch, cfg.in_channels, cfg.image_size, cfg.image_size)
    g = torch.Generator().manual_seed(1)
    if task.kind == "train":
        net = v.prepare(v.build(False).train())
        params = [p for p in net.parameters()]
        opt = torch.optim.AdamW(params, lr=1e-4)
        x0 = v.input(torch.rand(shape, generator=g) * 2 - 1)
        lg = torch.Generator().manual_seed(2)

        def step():
            opt.zero_grad(set_to_none=True)
            with v.autocast():
                loss = diffusion_loss(net, schedule, x0, "v", "min_snr", generator=lg)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        return step, step
    net = v.prepare(v.build(True).eval())
    labels = torch.randint(0, NUM_CLASSES, (b,), generator=g)
    if task.kind == "forward":
        x = v.input(torch.randn(shape, generator=g))
        t = torch.rand(b, generator=g) * (schedule.num_timesteps - 1)

        def step():
            with torch.inference_mode(), v.autocast():
                net(x, t, class_labels=labels)
        return step, step
    assert task.kind == "dpm"
    den = Denoiser(net, schedule, "v")
    null = torch.full((b,), NUM_CLASSES, dtype=torch.long)
    cfg_den = CFGDenoiser(den, {"class_labels": labels}, {"class_labels": null}, guidance_scale=GUIDANCE_SCALE)
    sigmas = schedule.sigmas_for_steps(DPM_STEPS)
    x = v.input(torch.randn(shape, generator=g) * float(sigmas[0]))
    state = {"run": DPMpp2M(cfg_den, x, sigmas)}

    def warm():  # one guided denoiser call at this batch (primitive caches, allocator)
        with torch.inference_mode(), v.autocast():
            cfg_den(x, torch.full((b,), float(sigmas[3])))

    def step():
        run = state["run"]
        if run.done:
            run = state["run"] = DPMpp2M(cfg_den, x, sigmas)
        with torch.inference_mode(), v.autocast():
            run.step()
    return warm, step


# ------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------

def run_alternating(steps: dict[str, tuple[Callable, Callable]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Warm every variant up, then time one step of each in turn, rotating the order every
    round (A B C, B C A, C A B, …). Returns the per-round times of each variant."""
    names = list(steps)
    for _ in range(warmup):
        for n in names:
            steps[n][0]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            t0 = time.perf_counter()
            steps[n][1]()
            times[n].append(time.perf_counter() - t0)
    return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of time_b / time_a (> 1: a is faster)."""
    return statistics.median(tb / ta for ta, tb in zip(a, b))


def measure_peak(repeats: int = 3) -> dict[str, float]:
    """Achieved GFLOP/s of large dense kernels: n×n matmul and a 3×3 conv (channels_last,
    oneDNN's preferred layout) in fp32 and bf16."""
    out = {}
    n = 2048
    g = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    x32 = torch.randn(64, 128, 28, 28, generator=g).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(128, 128, 3, padding=1).to(memory_format=torch.channels_last)
    conv_flops = 2 * 64 * 128 * 28 * 28 * 128 * 9
    cases = {
        "matmul fp32": (lambda: torch.mm(a32, b32), 2 * n**3),
        "matmul bf16": (lambda a=a32.bfloat16(), b=b32.bfloat16(): torch.mm(a, b), 2 * n**3),
        "conv3x3 fp32": (lambda: conv(x32), conv_flops),
        "conv3x3 bf16": (lambda c=copy.deepcopy(conv).bfloat16(), x=x32.bfloat16(): c(x), conv_flops),
    }
    with torch.inference_mode():
        for name, (fn, flops) in cases.items():
            fn()
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            out[name] = flops / min(ts) / 1e9  # best of: the peak is what the machine can do
    out["fp32"] = max(out["matmul fp32"], out["conv3x3 fp32"])
    out["bf16"] = max(out["matmul bf16"], out["conv3x3 bf16"])
    return out


# ------------------------------------------------------------------------------------------
# checks: same network work, prototype ≡ original, DPM++ 2M ≡ the library's
# ------------------------------------------------------------------------------------------

def network_facts(cfg: UNetConfig) -> dict:
    torch.manual_seed(0)
    ours = randomize_zero_init(UNet(cfg))
    diff = DiffusersNet(cfg)
    b = 2
    x = torch.randn(b, cfg.in_channels, cfg.image_size, cfg.image_size)
    t = torch.rand(b) * 999
    facts = {"params_ours": count_parameters(ours), "params_diffusers": count_parameters(diff.unet)}
    for name, net in (("ours", ours), ("diffusers", diff)):
        with torch.no_grad():
            facts[f"fwd_flops_{name}"] = count_flops(lambda: net(x, t)) / b

        def fwd_bwd():
            net(x, t).float().pow(2).mean().backward()
        facts[f"train_flops_{name}"] = count_flops(fwd_bwd) / b
        net.zero_grad(set_to_none=True)
    # the prototype computes the same function with the same weights and FLOPs
    proto = make_proto(ours)
    with torch.no_grad():
        ref, got = ours(x, t), proto(x, t)
        facts["fwd_flops_proto"] = count_flops(lambda: proto(x, t)) / b
    facts["proto_max_abs_diff"] = float((ref - got).abs().max())
    facts["proto_ref_scale"] = float(ref.abs().max())
    return facts


def check_dpm_against_library(cfg: UNetConfig, schedule) -> str:
    try:
        from torchdiffusion.sampling.registry import sample_dpmpp_2m
    except ImportError:
        return "torchdiffusion.samplers.sample_dpmpp_2m not available; the benchmark's own DPM++ 2M is used"
    torch.manual_seed(0)
    c = copy.deepcopy(cfg)
    c.num_classes = NUM_CLASSES
    net = randomize_zero_init(UNet(c)).eval()
    den = CFGDenoiser(Denoiser(net, schedule, "v"), {"class_labels": torch.tensor([1, 2])},
                      {"class_labels": torch.tensor([NUM_CLASSES] * 2)}, guidance_scale=GUIDANCE_SCALE)
    sigmas = schedule.sigmas_for_steps(DPM_STEPS)
    x = torch.randn(2, cfg.in_channels, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
    x = x * float(sigmas[0])
    with torch.no_grad():
        try:
            lib = sample_dpmpp_2m(den, x, sigmas)
        except Exception as exc:  # noqa: BLE001 - a colleague's module in flux; report, don't fail
            return f"sample_dpmpp_2m could not be called ({type(exc).__name__}: {exc}); own DPM++ 2M used"
        run = DPMpp2M(den, x, sigmas)
        while not run.done:
            run.step()
    diff = float((lib - run.x).abs().max())
    return f"own DPM++ 2M vs torchdiffusion.samplers.sample_dpmpp_2m: max |Δ| = {diff:.2e}"


# ------------------------------------------------------------------------------------------
# profile
# ------------------------------------------------------------------------------------------

def profile_variant(v: Variant, cfg: UNetConfig, schedule, task: Task, rows: int = 18) -> str:
    from torch.profiler import ProfilerActivity, profile

    warm, step = make_step(task, v, cfg, schedule)
    warm()
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------

def fmt_ratio(r: float | None) -> str:
    return "    -" if r is None else f"{r:5.2f}×"


def bench_config(name: str, cfg: UNetConfig, tasks: list[Task], variants: list[Variant],
                 warmup: int, repeats: Callable[[Task], int], include: Callable[[Variant, Task], bool]) -> dict:
    """Checks, then every task for every variant; returns the raw timings and facts."""
    schedule = ScheduleConfig().build()
    facts = network_facts(cfg)
    facts["dpm_check"] = check_dpm_against_library(cfg, schedule)
    out = {"facts": facts, "config": cfg.to_dict(), "tasks": {}}
    for task in tasks:
        vs = [v for v in variants if include(v, task)]
        steps = {v.name: make_step(task, v, cfg, schedule) for v in vs}
        t0 = time.perf_counter()
        times = run_alternating(steps, warmup, repeats(task))
        wall = time.perf_counter() - t0
        del steps
        print(f"timed {name} {task.label}: {len(vs)} variants × {repeats(task)} alternating "
              f"{'DPM++ steps' if task.kind == 'dpm' else 'repeats'} after {warmup} warm-up, {wall:.0f} s", flush=True)
        out["tasks"][task.label] = {"kind": task.kind, "batch": task.batch, "wall_s": wall,
                                    "variants": [v.name for v in vs], "times_s": times}
    return out


def analyse(cres: dict, variants: list[Variant], peak: dict) -> None:
    """Images/s, GFLOP/s, fraction of peak and paired ratios for every task of a config."""
    f = cres["facts"]
    flops = {"train": (f["train_flops_ours"], f["train_flops_diffusers"]),
             "forward": (f["fwd_flops_ours"], f["fwd_flops_diffusers"]),
             "dpm": (2 * DPM_STEPS * f["fwd_flops_ours"], 2 * DPM_STEPS * f["fwd_flops_diffusers"])}
    for task in cres["tasks"].values():
        times, kind = task["times_s"], task["kind"]
        vs = [v for v in variants if v.name in times]
        d_fp32 = next((w for w in vs if w.name == "diffusers fp32"), None)
        d_all = [w for w in vs if w.family == "diffusers"]
        rows = task["rows"] = {}
        for v in vs:
            ts = times[v.name]
            per_image = DPM_STEPS if kind == "dpm" else 1  # a dpm "step" is 1/20 of a run
            ips = task["batch"] / (statistics.median(ts) * per_image)
            gflops = ips * flops[kind][0 if v.family == "ours" else 1] / 1e9
            same = partner(v, vs) if v.family == "ours" else None
            row = {"images_per_s": ips, "images_per_s_best": task["batch"] / (min(ts) * per_image),
                   "gflops": gflops, "peak_fraction": gflops / peak[v.dtype], "partner": same and same.name}
            if v.family == "ours":
                row["vs_same"] = paired_ratio(ts, times[same.name]) if same else None
                row["vs_same_best"] = min(times[same.name]) / min(ts) if same else None
                row["vs_fp32"] = paired_ratio(ts, times[d_fp32.name]) if d_fp32 else None
                row["vs_best"] = min(paired_ratio(ts, times[w.name]) for w in d_all) if d_all else None
            rows[v.name] = row


def report(name: str, cres: dict, peak: dict) -> None:
    f, c = cres["facts"], cres["config"]
    print(f"\n=== config {name}: {c['in_channels']}×{c['image_size']}×{c['image_size']}, widths "
          f"{'/'.join(str(c['base_channels'] * m) for m in c['channel_mult'])}, {c['num_res_blocks']} res block(s)/level, "
          f"attention at {tuple(c['attention_resolutions'])}, head {c['head_channels']}, {c['norm_groups']} groups ===")
    print(f"parameters:        ours {f['params_ours']:,}   diffusers {f['params_diffusers']:,}")
    fo, fd = f["fwd_flops_ours"], f["fwd_flops_diffusers"]
    to, td = f["train_flops_ours"], f["train_flops_diffusers"]
    print(f"FLOPs/image fwd:   ours {fo / 1e6:.1f} M   diffusers {fd / 1e6:.1f} M   (ours/diffusers {fo / fd:.4f})")
    print(f"FLOPs/image train: ours {to / 1e6:.1f} M   diffusers {td / 1e6:.1f} M   (fwd+bwd, ours/diffusers {to / td:.4f})")
    if abs(fo / fd - 1) > 0.10:
        print("WARNING: FLOPs per image differ by more than 10%; use the per-FLOP ratios of the summary")
    print(f"prototype: max |Δ output| vs ours = {f['proto_max_abs_diff']:.2e} "
          f"(output scale {f['proto_ref_scale']:.2f}), FLOPs/image fwd {f['fwd_flops_proto'] / 1e6:.1f} M")
    print(f["dpm_check"])
    print("img/s: median of the alternating repeats; %peak: of the measured peak of the variant's compute dtype;")
    print("÷diff same: ours ÷ diffusers with the same precision/layout (like-for-like), ÷diff fp32: ÷ diffusers "
          "as used by default, ÷diff best: ÷ the fastest diffusers variant (all paired medians, >1 = ours faster)")
    for label, task in cres["tasks"].items():
        print(f"\n--- {name} {label}" + ("  (images/s of full 20-step CFG runs; network batch 2B)" if task["kind"] == "dpm" else ""))
        print(f"{'variant':<26}{'img/s':>9}{'(best)':>9}{'GFLOP/s':>9}{'%peak':>7}{'÷diff same':>12}{'÷diff fp32':>12}{'÷diff best':>12}")
        for vname, r in task["rows"].items():
            print(f"{vname:<26}{r['images_per_s']:9.1f}{r['images_per_s_best']:9.1f}{r['gflops']:9.1f}"
                  f"{100 * r['peak_fraction']:6.1f}%{fmt_ratio(r.get('vs_same')):>12}{fmt_ratio(r.get('vs_fp32')):>12}"
                  f"{fmt_ratio(r.get('vs_best')):>12}")


def summary(results: dict) -> None:
    print("\n=== summary: ours ÷ diffusers images/s (paired medians; >1 = ours faster) ===")
    print("like-for-like = diffusers with the same precision/layout/compilation (the headline); "
          "default-use = diffusers fp32 eager; best-of = ratio of the fastest repeats (noise check)")
    for cname, c in results.items():
        f = c["facts"]
        flop_ratio = f["fwd_flops_ours"] / f["fwd_flops_diffusers"]  # ours does this much more work per image
        for tname, t in c["tasks"].items():
            for vname, r in t["rows"].items():
                if r.get("vs_same") is None:
                    continue
                target = 1.5 if t["kind"] == "train" else 2.0
                rs = r["vs_same"]
                print(f"{cname:<6} {tname:<12} {vname:<20} like-for-like {rs:5.2f}× (per FLOP {rs * flop_ratio:5.2f}×, "
                      f"best-of {r['vs_same_best']:5.2f}×, vs {r['partner']})   default-use {fmt_ratio(r['vs_fp32'])}   "
                      f"target {target}×: {'met' if rs >= target else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=[*CONFIGS, "all"], default="mnist")
    p.add_argument("--tasks", nargs="*", default=None,
                   help="subset like 'train:32 forward:256 dpm:64' (default: train 32,128; forward 64,256; dpm 64,256)")
    p.add_argument("--variants", nargs="*", default=None, help="variant names to keep (see the table)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=8, help="alternating repeats for train/forward (batch ≤ 64)")
    p.add_argument("--large-repeats", type=int, default=3, help="alternating repeats for train/forward at batch > 64")
    p.add_argument("--compile", action="store_true", help="add torch.compile variants (minutes to compile per shape)")
    p.add_argument("--ablation", action="store_true",
                   help="add the prototype's parts separately and a bf16-weights variant (sampling)")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny batches, 1 repeat")
    p.add_argument("--full", action="store_true",
                   help=f"every variant on every task (default: 20-step runs at batch > 64 and on the larger "
                        f"model only for {', '.join(HEADLINE)}, the larger model at the smaller batches)")
    p.add_argument("--profile", action="store_true", help="print torch.profiler tables for ours/proto/diffusers bf16")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's, = cores)")
    p.add_argument("--json", default=None, help="write all numbers (with every step time) to this JSON file")
    args = p.parse_args(argv)

    try:
        import diffusers
    except ImportError:
        print("this benchmark needs diffusers: pip install diffusers", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tasks:
        tasks = [Task(s.split(":")[0], int(s.split(":")[1])) for s in args.tasks]
    elif args.quick:
        tasks = [Task("train", 4), Task("forward", 8), Task("dpm", 4)]
    else:
        tasks = [Task("train", 32), Task("train", 128), Task("forward", 64), Task("forward", 256),
                 Task("dpm", 64), Task("dpm", 256)]
    if any(t.kind not in ("train", "forward", "dpm") for t in tasks):
        p.error("task kinds are train, forward, dpm")

    bf16_ok = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}, python {platform.python_version()}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, mkldnn bf16 supported: {bf16_ok}")
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load_start:
        print("load average at start: %.2f %.2f %.2f (other jobs share this machine)" % load_start)
    t_start = time.perf_counter()
    peak_start = measure_peak()

    results: dict = {}
    names = list(CONFIGS) if args.config == "all" else [args.config]
    all_variants = {}
    for name in names:
        variants = all_variants[name] = make_variants(CONFIGS[name], args.compile, args.variants, args.ablation)
        cfg_tasks = tasks
        if name != "mnist" and not args.tasks and not args.quick and not args.full:
            # the larger model costs ~6× per image: keep its run to the smaller batches
            cfg_tasks = [Task("train", 32), Task("forward", 64), Task("dpm", 32)]

        def include(v: Variant, task: Task, name=name) -> bool:
            if task.kind not in v.kinds and not args.full:
                return False
            expensive = task.kind == "dpm" and (task.batch > 64 or name != "mnist")
            return args.full or args.quick or not expensive or v.name in HEADLINE

        def repeats(task: Task) -> int:
            if task.kind == "dpm":  # one full run per variant, alternating step by step
                return 2 if args.quick else DPM_STEPS
            return 1 if args.quick else args.large_repeats if task.batch > 64 else args.repeats
        results[name] = bench_config(name, CONFIGS[name], cfg_tasks, variants, args.warmup, repeats, include)
    peak_end = measure_peak()
    # the machine's peak: the best of the two measurements (other jobs only ever lower it)
    peak = {k: max(peak_start[k], peak_end[k]) for k in peak_start}
    print("\nmeasured peak GFLOP/s (best of start/end): " + ", ".join(
        f"{k} {peak[k]:.1f} ({peak_start[k]:.0f}/{peak_end[k]:.0f})" for k in peak if " " in k))
    for name, cres in results.items():
        analyse(cres, all_variants[name], peak)
        report(name, cres, peak)
    summary(results)
    if args.profile:
        for name in names:
            for vn in ("ours bf16", "proto bf16", "diffusers bf16"):
                v = next((w for w in all_variants[name] if w.name == vn), None)
                if v is None:
                    continue
                for task in (Task("train", 32), Task("forward", 64)):
                    print(f"\n--- profile {name} {task.label} {vn} (self CPU time, 2 steps) ---")
                    print(profile_variant(v, CONFIGS[name], ScheduleConfig().build(), task))
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s; load average at end: "
          + ("%.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else "?"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"peak_start": peak_start, "peak_end": peak_end, "peak": peak, "results": results,
                       "threads": torch.get_num_threads(), "load_start": load_start,
                       "torch": torch.__version__, "diffusers": diffusers.__version__}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

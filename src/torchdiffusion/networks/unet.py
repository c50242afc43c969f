"""The U-Net noise predictor, with the anatomy of ADM (Dhariwal & Nichol 2021, "Diffusion
Models Beat GANs on Image Synthesis", §3 and openai/guided-diffusion ``unet.py``).

* timestep t → sinusoidal features (Vaswani et al. 2017) → 2-layer MLP → embedding e;
  an optional class label adds a learned embedding to e (the last index is the "null" class
  used for classifier-free guidance), an optional pooled text vector adds a projection;
* residual blocks: GroupNorm → SiLU → 3×3 conv → GroupNorm · (1 + scale) + shift from e
  (ADM's "scale-shift norm") → SiLU → dropout → 3×3 conv, plus a 1×1 skip when widths differ;
* self-attention (multi-head, ``scaled_dot_product_attention``) at chosen resolutions, with
  optional cross-attention to text tokens (Rombach et al. 2022, LDM §3.3);
* encoder levels with stride-2 downsampling, a middle block, decoder levels with nearest
  upsampling and skip connections concatenating the encoder activations.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdiffusion.errors import ConfigError
from torchdiffusion.io.memory import physical_memory


UNET_INT_LIMITS = {"image_size": 1 << 14, "in_channels": 1024, "out_channels": 1024, "extra_in_channels": 1024,
                   "base_channels": 1 << 14, "num_res_blocks": 64, "head_channels": 1 << 14, "norm_groups": 1 << 14,
                   "num_classes": 1 << 20, "context_dim": 1 << 14, "pooled_dim": 1 << 14}


@dataclass
class UNetConfig:
    """Architecture hyper-parameters; saved as JSON beside the weights."""

    image_size: int = 28
    in_channels: int = 1
    out_channels: int | None = None  # defaults to in_channels
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (7,)
    head_channels: int = 32
    dropout: float = 0.0
    num_classes: int | None = None  # class conditioning (adds a null class for CFG)
    context_dim: int | None = None  # text-token width for cross-attention
    pooled_dim: int | None = None  # pooled text vector added to the time embedding
    extra_in_channels: int = 0  # image-like conditions concatenated to the input (inpaint, SR)
    norm_groups: int = 8
    guidance_embed: bool = False  # a guidance-distilled student: the CFG scale w is an input (Meng et al. 2023)

    def __post_init__(self) -> None:
        try:
            self.channel_mult = tuple(int(m) for m in self.channel_mult)
            self.attention_resolutions = tuple(int(r) for r in self.attention_resolutions)
        except (TypeError, ValueError):
            raise ConfigError("UNet config channel_mult and attention_resolutions must be lists of integers") from None

    @property
    def resolutions(self) -> list[int]:
        """Feature-map sizes of the encoder levels (28 → 28, 14, 7 for three levels)."""
        sizes, s = [], self.image_size
        for _ in self.channel_mult:
            sizes.append(s)
            s = (s + 1) // 2
        return sizes

    def validate(self) -> None:
        for name in ("image_size", "in_channels", "base_channels", "num_res_blocks", "head_channels",
                     "extra_in_channels", "norm_groups", "out_channels", "num_classes", "context_dim", "pooled_dim"):
            value = getattr(self, name)
            optional = name in ("out_channels", "num_classes", "context_dim", "pooled_dim")
            if (value is None and not optional) or (value is not None and (isinstance(value, bool)
                                                                          or not isinstance(value, int))):
                raise ConfigError(f"UNet config {name} must be an integer, got {value!r}")
        if not isinstance(self.guidance_embed, bool):
            raise ConfigError(f"UNet config guidance_embed must be true or false, got {self.guidance_embed!r}")
        if not isinstance(self.dropout, (int, float)):
            raise ConfigError(f"UNet config dropout must be a number, got {self.dropout!r}")
        # ranges, so that a hand-edited or hostile config.json fails here and not deep inside torch
        for name, hi in UNET_INT_LIMITS.items():
            value, lo = getattr(self, name), 0 if name == "extra_in_channels" else 1
            if value is not None and not lo <= value <= hi:
                raise ConfigError(f"UNet config {name} must be in [{lo}, {hi}], got {value}")
        if not self.channel_mult or len(self.channel_mult) > 16 or any(not 1 <= m <= 64 for m in self.channel_mult):
            raise ConfigError(f"channel_mult must be 1 to 16 integers in [1, 64], got {self.channel_mult}")
        params = sum(20 * (self.base_channels * m) ** 2 * (self.num_res_blocks + 1) for m in self.channel_mult)
        if params > 4e9:
            raise ConfigError(f"this UNet config would have about {params / 1e9:.0f} billion parameters "
                              "(base_channels × channel_mult too large)")
        if self.image_size < 1 or self.in_channels < 1 or self.base_channels < 1:
            raise ConfigError("image_size, in_channels and base_channels must be positive")
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ConfigError(f"channel_mult must be non-empty positive integers, got {self.channel_mult}")
        if self.num_res_blocks < 1:
            raise ConfigError(f"num_res_blocks must be ≥ 1, got {self.num_res_blocks}")
        reached = self.resolutions
        for r in self.attention_resolutions:
            if r not in reached:
                raise ConfigError(
                    f"attention resolution {r} is never reached: image_size {self.image_size} with "
                    f"{len(self.channel_mult)} levels has feature maps {reached}")
        for m in self.channel_mult:
            ch = self.base_channels * m
            if ch % self.norm_groups:
                raise ConfigError(f"width {ch} is not divisible by norm_groups {self.norm_groups}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ConfigError(f"num_classes must be ≥ 1, got {self.num_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown UNet config keys {sorted(unknown)}")
        return cls(**d)


GUIDANCE_EMBED_SCALE = 100.0  # w ∈ [0, 10] spans the sinusoids as t ∈ [0, 1000) does


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features [cos(t·f_k), sin(t·f_k)], f_k = max_period^(-k/(dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """ADM residual block with scale-shift conditioning on the embedding."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over pixels, plus optional cross-attention to context tokens."""

    def __init__(self, channels: int, head_channels: int, groups: int, context_dim: int | None = None):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.cross = None
        if context_dim is not None:
            self.cross_norm = nn.GroupNorm(groups, channels)
            self.cross_q = nn.Conv2d(channels, channels, 1)
            self.cross_kv = nn.Linear(context_dim, 2 * channels)
            self.cross = nn.Conv2d(channels, channels, 1)
            nn.init.zeros_(self.cross.weight)
            nn.init.zeros_(self.cross.bias)

    def _split(self, t: Tensor) -> Tensor:  # (B, C, N) -> (B, heads, N, C/heads)
        """Heads view of a (B, C, N) projection. Without autograd the view is made contiguous,
        so ``scaled_dot_product_attention`` takes PyTorch's fused CPU flash kernel (+35 % on a
        forward with 16×16 attention, docs/performance.md); under autograd the strided view
        keeps the math path, whose backward is faster than the flash backward on CPU."""
        b, c, n = t.shape
        t = t.reshape(b, self.heads, c // self.heads, n).transpose(2, 3)
        return t if torch.is_grad_enabled() else t.contiguous()

    def forward(self, x: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
        b, c, hgt, wid = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3 * c, hgt * wid).chunk(3, dim=1)
        h = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        x = x + self.proj(h.transpose(2, 3).reshape(b, c, hgt, wid))
        if self.cross is not None and context is not None:
            q = self._split(self.cross_q(self.cross_norm(x)).reshape(b, c, hgt * wid))
            k, v = self.cross_kv(context).transpose(1, 2).chunk(2, dim=1)  # (B, C, L) each
            mask = None if context_mask is None else context_mask[:, None, None, :].bool()
            h = F.scaled_dot_product_attention(q, self._split(k), self._split(v), attn_mask=mask)
            x = x + self.cross(h.transpose(2, 3).reshape(b, c, hgt, wid))
        return x


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


def forward_bytes(config: "UNetConfig") -> int:
    """A lower estimate of the memory one image's forward pass needs (fp32): the feature maps
    of every level (each block keeps about four maps of its width alive, plus the skips) and
    the self-attention score matrices (tokens² per head)."""
    total = 0
    for level, (size, mult) in enumerate(zip(config.resolutions, config.channel_mult)):
        maps = 4 * (2 * config.num_res_blocks + 1)
        total += maps * size * size * config.base_channels * mult * 4
        if size in config.attention_resolutions:
            heads = max(1, config.base_channels * mult // config.head_channels)
            total += heads * (size * size) ** 2 * 4
    return total


class UNet(nn.Module):
    """ε/x₀/v-predicting U-Net: ``forward(x_t, t, class_labels=None, context=None,
    context_mask=None, pooled=None, cond_image=None)``.

    ``class_labels`` uses index ``num_classes`` for the null (unconditional) class; a float
    tensor (B, num_classes + 1) of weights instead mixes the class embeddings, Σ_c w_c e_c (how a
    class walk interpolates its condition);
    ``cond_image`` (B, extra_in_channels, H, W) is concatenated to the input.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        config.validate()
        need, ram = forward_bytes(config), physical_memory()
        if ram is not None and need > ram:  # e.g. image_size 16384: refuse before allocating anything
            raise ConfigError(f"a U-Net of image size {config.image_size} (base channels {config.base_channels}, "
                              f"attention at {list(config.attention_resolutions)}) needs at least "
                              f"{need / 2**30:.1f} GiB for one image's forward pass, more than this machine's "
                              f"{ram / 2**30:.1f} GiB; use a smaller --image-size (or latent diffusion, --vae)")
        self.config = config
        c0 = config.base_channels
        emb_dim = 4 * c0
        g = config.norm_groups
        self.time_mlp = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(config.num_classes + 1, emb_dim) if config.num_classes else None
        self.pooled_proj = nn.Linear(config.pooled_dim, emb_dim) if config.pooled_dim else None
        self.guidance_mlp = None
        if config.guidance_embed:  # zero last layer: a student starts as its teacher's conditional model
            self.guidance_mlp = nn.Sequential(nn.Linear(c0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            nn.init.zeros_(self.guidance_mlp[2].weight)
            nn.init.zeros_(self.guidance_mlp[2].bias)
        self.input_conv = nn.Conv2d(config.in_channels + config.extra_in_channels, c0, 3, padding=1)

        resolutions = config.resolutions
        self.down = nn.ModuleList()
        skip_channels = [c0]
        ch = c0
        for level, mult in enumerate(config.channel_mult):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks):
                out = c0 * mult
                layer = nn.ModuleList([ResBlock(ch, out, emb_dim, config.dropout, g)])
                if resolutions[level] in config.attention_resolutions:
                    layer.append(AttentionBlock(out, config.head_channels, g, config.context_dim))
                blocks.append(layer)
                ch = out
                skip_channels.append(ch)
            down = Downsample(ch) if level < len(config.channel_mult) - 1 else None
            if down is not None:
                skip_channels.append(ch)
            self.down.append(nn.ModuleDict({"blocks": blocks, **({"down": down} if down else {})}))

        self.mid = nn.ModuleList([
            ResBlock(ch, ch, emb_dim, config.dropout, g),
            AttentionBlock(ch, config.head_channels, g, config.context_dim),
            ResBlock(ch, ch, emb_dim, config.dropout, g),
        ])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            blocks = nn.ModuleList()
            for _ in range(config.num_res_blocks + 1):
                out = c0 * mult
                layer = nn.ModuleList([ResBlock(ch + skip_channels.pop(), out, emb_dim, config.dropout, g)])
                if resolutions[level] in config.attention_resolutions:
                    layer.append(AttentionBlock(out, config.head_channels, g, config.context_dim))
                blocks.append(layer)
                ch = out
            up = Upsample(ch) if level > 0 else None
            self.up.append(nn.ModuleDict({"blocks": blocks, **({"up": up} if up else {})}))

        self.out_norm = nn.GroupNorm(g, ch)
        self.out_conv = nn.Conv2d(ch, config.out_channels or config.in_channels, 3, padding=1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def _run_layer(self, layer: nn.ModuleList, h: Tensor, emb: Tensor, ctx: dict) -> Tensor:
        h = layer[0](h, emb)
        if len(layer) > 1:
            h = layer[1](h, **ctx)
        return h

    def forward(self, x: Tensor, t: Tensor, class_labels: Tensor | None = None, context: Tensor | None = None,
                context_mask: Tensor | None = None, pooled: Tensor | None = None,
                cond_image: Tensor | None = None, guidance: Tensor | float | None = None) -> Tensor:
        cfg = self.config
        if x.shape[1] != cfg.in_channels:
            raise ConfigError(f"model expects {cfg.in_channels} input channels, got {x.shape[1]}")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.time_mlp(timestep_embedding(t, cfg.base_channels).to(x.dtype))
        if self.class_emb is not None:
            if class_labels is None:  # unconditional: the null class
                class_labels = torch.full((x.shape[0],), cfg.num_classes, device=x.device, dtype=torch.long)
            if class_labels.is_floating_point():  # weights over the classes: a mix of their embeddings
                if class_labels.shape[-1] != cfg.num_classes + 1:
                    raise ConfigError(f"class weights need {cfg.num_classes + 1} entries (the null class last), "
                                      f"got {class_labels.shape[-1]}")
                emb = emb + class_labels.to(emb.dtype) @ self.class_emb.weight.to(emb.dtype)
            else:
                emb = emb + self.class_emb(class_labels)
        if self.pooled_proj is not None and pooled is not None:
            emb = emb + self.pooled_proj(pooled)
        if self.guidance_mlp is not None:
            if guidance is None:
                raise ConfigError("this guidance-distilled model needs its guidance scale as an input (guidance=w)")
            w = torch.as_tensor(guidance, device=x.device, dtype=torch.float32)
            w = w.expand(x.shape[0]) if w.ndim == 0 else w
            emb = emb + self.guidance_mlp(timestep_embedding(w * GUIDANCE_EMBED_SCALE, cfg.base_channels).to(emb.dtype))
        if cfg.extra_in_channels:
            if cond_image is None:
                raise ConfigError(f"this model needs a cond_image with {cfg.extra_in_channels} channels")
            x = torch.cat([x, cond_image.to(x.dtype)], dim=1)
        ctx = {"context": context, "context_mask": context_mask}

        h = self.input_conv(x)
        skips = [h]
        for level in self.down:
            for layer in level["blocks"]:
                h = self._run_layer(layer, h, emb, ctx)
                skips.append(h)
            if "down" in level:
                h = level["down"](h)
                skips.append(h)
        h = self.mid[0](h, emb)
        h = self.mid[1](h, **ctx)
        h = self.mid[2](h, emb)
        for level in self.up:
            for layer in level["blocks"]:
                h = self._run_layer(layer, torch.cat([h, skips.pop()], dim=1), emb, ctx)
            if "up" in level:
                h = level["up"](h, skips[-1].shape[-2:])
        return self.out_conv(F.silu(self.out_norm(h)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

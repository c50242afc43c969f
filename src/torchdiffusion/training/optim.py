"""Optimizer pieces shared by the trainers: precision, the learning-rate warm-up, and the
optimizer state as safetensors (tensors) + JSON (param groups), never a pickle."""
from __future__ import annotations

import torch

from torchdiffusion.networks.precision import bf16_supported, resolve_precision  # noqa: F401  (the trainers' import)


def lr_at(step: int, cfg) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then constant (EMA does the annealing)."""
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{idx}.{k}"] = torch.as_tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})

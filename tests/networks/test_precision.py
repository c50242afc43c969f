"""Inference precision: fp32 / bf16 / fp16 autocast of the denoiser network, samplers in fp32."""
import logging

import pytest
import torch

from helpers import make_models, tiny_model_config
from torchdiffusion.cli.main import main
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.errors import ConfigError
from torchdiffusion.networks import precision as precision_mod
from torchdiffusion.networks.precision import check_precision, precision_name, resolve_precision
from torchdiffusion.pipeline import DiffusionPipeline


def test_names_and_refusals():
    assert resolve_precision("fp32") is None
    assert resolve_precision("bf16") is torch.bfloat16
    assert resolve_precision("fp16", "cuda") is torch.float16
    assert resolve_precision("auto", "cpu") is (torch.bfloat16 if precision_mod.bf16_supported() else None)
    for bad in ("fp64", "", None, 16, "BF16 "):
        with pytest.raises(ConfigError, match="unknown precision"):
            check_precision(bad)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        check_precision("fp16", "cpu")
    assert [precision_name(d) for d in (None, torch.bfloat16, torch.float16)] == ["fp32", "bf16", "fp16"]


def test_auto_without_bf16_stays_fp32_and_says_so_once(monkeypatch, caplog):
    monkeypatch.setattr(precision_mod, "bf16_supported", lambda: False)
    monkeypatch.setattr(precision_mod, "_SAID", set())
    with caplog.at_level(logging.INFO, logger="torchdiffusion"):
        assert resolve_precision("auto", "cpu", say=True) is None
        assert resolve_precision("auto", "cpu", say=True) is None
    said = [r.message for r in caplog.records if "no native bf16" in r.message]
    assert len(said) == 1 and "fp32" in said[0]


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_denoiser_is_close_to_fp32_and_returns_fp32(channels_last):
    cfg = tiny_model_config(num_classes=3)
    den = build_denoiser(cfg).eval()
    for p in den.network.parameters():  # a fresh U-Net's output layer is zero: give it a real output
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(6, 1, 8, 8) * 3
    sigma = torch.tensor([0.05, 0.3, 1.0, 3.0, 10.0, 80.0])
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        ref = den(x, sigma, class_labels=labels)
        den.set_precision(torch.bfloat16, channels_last=channels_last)
        low = den(x, sigma, class_labels=labels)
        den.set_precision(None)
        again = den(x, sigma, class_labels=labels)
    assert low.dtype == torch.float32 and low.is_contiguous()
    assert not torch.equal(low, ref)  # it really ran in bf16
    rel = (low - ref).norm() / ref.norm()
    assert rel < 0.03, rel  # bf16 has 8 significant bits: ~0.4 % per operation
    assert torch.equal(again, ref)  # back to fp32 exactly (weights never changed)
    assert all(p.is_contiguous() for p in den.parameters())


def test_fp32_setting_leaves_an_outer_autocast_alone():
    """The trainer runs the denoiser under its own autocast: autocast_dtype None must not disable it."""
    den = build_denoiser(tiny_model_config()).eval()
    for p in den.network.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([1.0, 2.0])
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = den(x, sigma)
        den.set_precision(torch.bfloat16)
        own = den(x, sigma)
    assert torch.equal(inside, own)


def test_pipeline_precision_api(tmp_path):
    make_models(tmp_path)
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "tiny-class", precision="fp32")
    assert pipe.precision == "fp32"
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a fresh U-Net's output layer is zero: give it a real output
        for p in pipe.denoiser.network.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    ref = pipe.generate(n=3, steps=4, progress=False)
    pipe.set_precision("bf16")
    assert pipe.precision == "bf16" and not pipe.denoiser.channels_last
    low = pipe.generate(n=3, steps=4, progress=False)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert not torch.equal(low, ref) and (low - ref).abs().max() < 0.1
    assert pipe.to("cpu").precision == "bf16"  # .to keeps an explicit choice
    auto = DiffusionPipeline.from_pretrained(tmp_path / "tiny-class")
    assert auto.precision == ("bf16" if precision_mod.bf16_supported() else "fp32")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        DiffusionPipeline.from_pretrained(tmp_path / "tiny-class", precision="fp16")
    with pytest.raises(ConfigError, match="unknown precision"):
        pipe.set_precision("half")


def test_cli_precision_and_interval(tmp_path, capsys):
    make_models(tmp_path)
    out = tmp_path / "g.png"
    base = ["sample", "--checkpoint", str(tmp_path / "tiny-class"), "--n", "3", "--steps", "3", "--no-progress",
            "--out", str(out)]
    assert main(base + ["--precision", "bf16", "--guidance-interval", "0.5,inf"]) == 0
    assert "bf16" in capsys.readouterr().out and out.is_file()
    assert main(base + ["--precision", "fp16"]) != 0
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
    assert main(base + ["--guidance-interval", "5,1"]) != 0
    err = capsys.readouterr().err
    assert "--guidance-interval must be two noise levels" in err and len(err.strip().splitlines()) == 1

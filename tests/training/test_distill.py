"""Distillation (training/distill.py): the rounds, the target's math, the student as a normal model
folder, and one clear error for each misuse."""
import json

import pytest
import torch

from helpers import tiny_model_config
from torchdiffusion.cli.main import main
from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.data.mnist import load_mnist
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.denoiser.wrappers import CountingDenoiser
from torchdiffusion.errors import ConfigError
from torchdiffusion.pipeline import DiffusionPipeline
from torchdiffusion.pipeline.folders import save_model
from torchdiffusion.training.config import TrainConfig
from torchdiffusion.training.distill import DistillTrainer, distill, rounds_for, student_config

TINY = {"steps": 3, "batch_size": 8, "progress": False, "sample_n": 3, "checkpoint_every": 2, "precision": "fp32",
        "log_every": 1}


@pytest.fixture(scope="module")
def data():
    ds = load_mnist(image_size=8)
    return ImageDataset(ds.images[:64], ds.labels[:64] % 3, ["a", "b", "c"], name="mnist-8px-3")


def teacher(root, conditional=True):
    torch.manual_seed(0)
    cfg = tiny_model_config(num_classes=3) if conditional else tiny_model_config()
    if conditional:
        cfg.conditioning, cfg.class_names = "class", ["a", "b", "c"]
    den = build_denoiser(cfg)
    for p in den.network.parameters():  # a real (non-zero) output
        torch.nn.init.normal_(p, std=0.05)
    return save_model(root / ("teacher" if conditional else "uncond"), den, cfg)


def test_rounds_halve_from_four():
    assert rounds_for(4) == [4] and rounds_for(2) == [4, 2] and rounds_for(1) == [4, 2, 1] and rounds_for(8) == [8]
    for bad in (0, 3, 5, 32):
        with pytest.raises(ConfigError, match="--steps must be one of 1, 2, 4, 8, 16"):
            rounds_for(bad)


def test_target_is_the_teacher_when_one_ddim_substep_and_the_student_starts_as_the_teacher(tmp_path, data):
    """With an unconditional teacher and one DDIM teacher step per student step, the student's
    target x̂₀* = (x' − r x)/(1 − r) is the teacher's own x̂₀: the initial student (the teacher's
    weights, its guidance MLP zero) has zero loss; with two teacher steps it has not."""
    folder = teacher(tmp_path, conditional=False)
    _, tcfg = folder, json.loads((folder / "config.json").read_text())
    from torchdiffusion.denoiser.model import ModelConfig

    tcfg = ModelConfig.from_dict(tcfg)
    x0 = data.images[:8].float() / 127.5 - 1
    t = torch.arange(8) * 100 + 7
    noise = torch.randn(8, 1, 8, 8)
    losses = {}
    for m in (1, 2):
        cfg = student_config(tcfg, folder, 4, m, 0, str(folder))
        tr = DistillTrainer(cfg, TrainConfig(out=str(tmp_path / f"r{m}"), **TINY), dataset=data)
        tr.teacher_is_student = True  # plain DDIM substeps (the 2M combination needs m > 1 anyway)
        tr.network.eval()
        with torch.no_grad():
            losses[m] = float(tr.compute_loss(tr.network, x0, t, noise, {}))
    assert losses[1] < 1e-10 and losses[2] > 1e-6, losses


def test_distilled_student_is_a_normal_model_folder(tmp_path, data, capsys):
    t = teacher(tmp_path)
    out = distill(t, tmp_path / "d", steps=2, train_options=dict(TINY), dataset=data)
    assert out == tmp_path / "d" / "model"
    assert {p.name for p in (tmp_path / "d").iterdir()} >= {"round-4", "round-2", "model", "DISTILLED.txt"}
    assert (tmp_path / "d" / "round-4" / "log.csv").is_file() and (tmp_path / "d" / "round-2" / "samples.png").is_file()
    pipe = DiffusionPipeline.from_pretrained(out, precision="fp32")
    d = pipe.config.distilled
    assert d["steps"] == 2 and d["round"] == 1 and d["original_teacher"] == str(t)
    assert d["teacher"].endswith("round-4/model") and d["guidance_range"] == [1.0, 4.0]
    assert pipe.default_sampling() == ("Distilled", 2)
    # one forward of batch B per step: the guidance scale is an input, no CFG pair
    batches = []
    pipe.denoiser.network.register_forward_hook(lambda m, a, o: batches.append(a[0].shape[0]))
    images = pipe.generate(n=3, class_labels=[0, 1, 2], guidance_scale=3.0, progress=False)
    assert images.shape == (3, 1, 8, 8) and batches == [3, 3]
    assert not torch.equal(images, pipe.generate(n=3, class_labels=[0, 1, 2], guidance_scale=1.0, progress=False))
    # one clear error for each misuse
    with pytest.raises(ConfigError, match="are more than it was distilled for"):
        pipe.generate(n=1, steps=4, progress=False)
    with pytest.raises(ConfigError, match="samples with the sampler 'Distilled'"):
        pipe.generate(n=1, sampler="Euler", steps=2, progress=False)
    with pytest.raises(ConfigError, match="samples with the sampler 'Distilled'"):
        pipe.generate(n=1, sampler="DPM++ 2M", steps=2, progress=False)
    for bad in (8.0, 0.0):
        with pytest.raises(ConfigError, match="guidance-distilled student for guidance scales 1 to 4"):
            pipe.generate(n=1, guidance_scale=bad, progress=False)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="must be a number from 0 to 30"):
            pipe.generate(n=1, guidance_scale=bad, progress=False)
    # the CLI samples it with its own defaults; a task with too many steps is refused in one line
    assert main(["sample", "--checkpoint", str(out), "--n", "3", "--out", str(tmp_path / "s.png"), "--no-progress"]) == 0
    assert "Distilled 2 steps" in capsys.readouterr().out
    img, mask = tmp_path / "in.png", tmp_path / "mask.png"
    pipe.to_pil(images[:1])[0].save(img)
    pipe.to_pil(torch.ones(1, 1, 8, 8))[0].save(mask)
    assert main(["inpaint", "--checkpoint", str(out), "--image", str(img), "--mask", str(mask), "--class", "0",
                 "--out", str(tmp_path / "i.png")]) == 2
    err = capsys.readouterr().err
    assert "distilled student for 2 steps" in err and len(err.strip().splitlines()) == 1
    assert main(["inpaint", "--checkpoint", str(out), "--image", str(img), "--mask", str(mask), "--class", "0",
                 "--steps", "2", "--sampler", "Distilled", "--out", str(tmp_path / "i.png")]) == 0
    # finished rounds are kept on resume; a second distillation into the same folder is refused
    assert distill(t, tmp_path / "d", steps=2, resume=True, train_options=dict(TINY), dataset=data) == out
    with pytest.raises(ConfigError, match="already holds a distillation"):
        distill(t, tmp_path / "d", steps=2, train_options=dict(TINY), dataset=data)
    with pytest.raises(ConfigError, match="already a distilled student"):
        distill(out, tmp_path / "e", steps=1, train_options=dict(TINY), dataset=data)


def test_distill_refuses_what_is_not_a_diffusion_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["distill", "--checkpoint", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and len(err.strip().splitlines()) == 1
    from torchdiffusion.networks.autoencoder import Autoencoder, AutoencoderConfig
    from torchdiffusion.pipeline.folders import save_autoencoder

    vae = Autoencoder(AutoencoderConfig(image_size=16, in_channels=1, latent_channels=4, base_channels=8,
                                        channel_mult=(1, 2, 2), norm_groups=4))
    save_autoencoder(tmp_path / "vae", vae)
    assert main(["distill", "--checkpoint", str(tmp_path / "vae"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "vae" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["distill", "--checkpoint", str(tmp_path / "vae"), "--out", str(tmp_path / "o"), "--steps", "3"])
    assert "invalid choice: 3" in capsys.readouterr().err

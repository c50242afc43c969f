import json
import shutil

import pytest
import torch
from PIL import Image

from helpers import tiny_model_config
from torchdiffusion.networks.autoencoder import Autoencoder, AutoencoderConfig
from torchdiffusion.pipeline.folders import save_autoencoder
from torchdiffusion.cli.main import main
from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.errors import CheckpointError, ConfigError
from torchdiffusion.data.latents import LatentDataset
from torchdiffusion.denoiser.space import LatentSpace
from torchdiffusion.pipeline.folders import load_components
from torchdiffusion.training.latent import latent_dataset
from torchdiffusion.denoiser.space import latent_scale_factor
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.pipeline.pipeline import DiffusionPipeline


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_vae(scale_factor=1.0, in_channels=1, latent_channels=4) -> Autoencoder:
    return Autoencoder(AutoencoderConfig(image_size=16, in_channels=in_channels, latent_channels=latent_channels,
                                         base_channels=8, channel_mult=(1, 2, 2), norm_groups=4,
                                         scale_factor=scale_factor)).eval()


def images(n=12, size=16, channels=1, seed=0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, channels, size, size, generator=g) * 255).to(torch.uint8)
    return ImageDataset(x, labels=torch.arange(n) % 2, class_names=["a", "b"], name="synthetic")


def test_scale_factor_gives_unit_variance():
    vae = tiny_vae()
    ds = images(20)
    x = ds.batch(torch.arange(20))
    s = latent_scale_factor(vae, x)
    z = vae.encode(x).mode() * s
    assert z.double().std().item() == pytest.approx(1.0, abs=1e-5)
    # scaling the encoder's output by 3 divides the factor by 3
    with torch.no_grad():
        vae.quant_conv.weight.mul_(3)
        vae.quant_conv.bias.mul_(3)
    assert latent_scale_factor(vae, x) == pytest.approx(s / 3, rel=1e-4)


def test_latent_dataset_caches_and_flips(tmp_path):
    vae = tiny_vae(scale_factor=0.5)
    save_autoencoder(tmp_path / "vae", vae)
    ds = images(6)
    lat = latent_dataset(vae, ds, flip=True, cache=tmp_path / "lat.safetensors", vae_folder=tmp_path / "vae")
    assert isinstance(lat, LatentDataset) and lat.channels == 4 and lat.image_size == 4 and len(lat) == 6
    expected = vae.encode(ds.batch(torch.arange(6))).mode() * 0.5
    torch.testing.assert_close(lat.latents, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(lat.labels, ds.labels) and lat.class_names == ["a", "b"]
    # a flipped draw is the latent of the mirrored image, not a mirrored latent
    b = lat.batch(torch.tensor([0, 1]), flip=torch.tensor([False, True]))
    torch.testing.assert_close(b[1], vae.encode(ds.batch(torch.tensor([1])).flip(-1)).mode()[0] * 0.5,
                               atol=1e-5, rtol=1e-5)
    assert torch.equal(b[0], lat.latents[0])
    # the cache is reused (same tensors), and rebuilt for other images
    again = latent_dataset(vae, ds, flip=True, cache=tmp_path / "lat.safetensors", vae_folder=tmp_path / "vae")
    assert torch.equal(again.latents, lat.latents)
    other = latent_dataset(vae, images(6, seed=1), flip=True, cache=tmp_path / "lat.safetensors",
                           vae_folder=tmp_path / "vae")
    assert not torch.equal(other.latents, lat.latents)
    with pytest.raises(ConfigError, match="3-channel images but the VAE encodes 1-channel"):
        latent_dataset(vae, images(2, channels=3))


def _pipeline(**unet) -> DiffusionPipeline:
    cfg = tiny_model_config(image_size=4, in_channels=4, attention_resolutions=(2,), **unet)
    den = build_denoiser(cfg).eval()
    with torch.no_grad():  # the U-Net's output conv starts at zero; give it weights so outputs depend on them
        for p in den.network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return DiffusionPipeline(den, cfg, LatentSpace(tiny_vae(scale_factor=0.8)))


def test_pipeline_save_load_gives_identical_samples(tmp_path):
    pipe = _pipeline()
    assert pipe.latent_shape == (4, 4, 4) and pipe.image_shape == (1, 16, 16)
    a = pipe.generate(n=3, steps=3, seed=5, progress=False)
    assert a.shape == (3, 1, 16, 16) and a.abs().max() <= 1
    lat = pipe.generate(n=3, steps=3, seed=5, progress=False, output="latents")
    assert lat.shape == (3, 4, 4, 4)
    torch.testing.assert_close(pipe.decode(lat), a)
    folder = pipe.save_pretrained(tmp_path / "pipe")
    assert sorted(p.name for p in folder.iterdir()) == ["model_index.json", "unet", "vae"]
    assert json.loads((folder / "vae" / "config.json").read_text())["scale_factor"] == 0.8
    for loaded in (load_components(folder, latent=True), DiffusionPipeline.from_pretrained(folder, precision="fp32")):
        if isinstance(loaded, tuple):
            assert loaded[2] is not None
            continue
        assert loaded.is_latent and isinstance(loaded.space, LatentSpace)
        assert torch.equal(loaded.generate(n=3, steps=3, seed=5, progress=False), a)
    # encode → decode round trip goes through the scale factor
    x = a[:2]
    z = pipe.encode(x)
    torch.testing.assert_close(z, pipe.vae.encode(x).mode() * 0.8)
    torch.testing.assert_close(pipe.decode(z), pipe.vae.decode(z / 0.8).clamp(-1, 1))


def test_pipeline_errors_name_the_component(tmp_path):
    pipe = _pipeline()
    folder = pipe.save_pretrained(tmp_path / "pipe")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(CheckpointError, match="component 'vae' is missing"):
        DiffusionPipeline.from_pretrained(broken)
    shutil.copytree(folder / "vae", broken / "vae")
    (broken / "unet" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="pipeline component 'unet'.*checksum mismatch"):
        DiffusionPipeline.from_pretrained(broken)
    # a U-Net whose channels do not match the VAE's latent channels
    cfg = tiny_model_config(image_size=4, in_channels=3, attention_resolutions=(2,))
    with pytest.raises(ConfigError, match="3 input / 3 output channels but the VAE's latents have 4"):
        DiffusionPipeline(build_denoiser(cfg), cfg, LatentSpace(tiny_vae()))


def _folder(root, n=16, size=16):
    root.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        arr = (torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(root / f"{i:02d}.png")
    return root


def test_cli_train_vae_then_latent_diffusion_then_sample(tmp_path, capsys):
    data = _folder(tmp_path / "imgs")
    vae = tmp_path / "vae"
    assert main(["train-vae", "--data", str(data), "--image-size", "16", "--out", str(vae), "--steps", "3",
                 "--base-channels", "8", "--batch-size", "4", "--holdout", "0.25", "--gan", "--disc-start", "1",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "held-out PSNR" in out and "latents 12.0× smaller" in out
    assert (vae / "vae" / "config.json").is_file() and (vae / "reconstructions.png").is_file()
    run = tmp_path / "ldm"
    tiny = ["--base-channels", "8", "--channel-mult", "1,2", "--batch-size", "4", "--sample-n", "2",
            "--sample-steps", "2", "--final-steps", "2", "--no-progress", "--precision", "fp32"]
    assert main(["train", "--data", str(data), "--vae", str(vae), "--out", str(run), "--steps", "2", *tiny]) == 0
    assert (run / "model" / "model_index.json").is_file() and (run / "latents.safetensors").is_file()
    assert Image.open(run / "samples.png").size[0] > 2 * 16
    unet = json.loads((run / "model" / "unet" / "config.json").read_text())["unet"]
    assert unet["image_size"] == 4 and unet["in_channels"] == 4
    grid = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(run), "--n", "2", "--steps", "2", "--out", str(grid),
                 "--scale", "1", "--no-progress"]) == 0
    assert Image.open(grid).size == (2 + 2 * 18, 2 + 18)  # two 16-px images: pixels, not latents
    # a latent run without its export yet samples from its checkpoint (EMA U-Net + the run's VAE)
    shutil.rmtree(run / "model")
    from_ckpt = DiffusionPipeline.from_pretrained(run)
    assert from_ckpt.is_latent
    assert from_ckpt.generate(n=1, steps=2, progress=False).shape == (1, 3, 16, 16)
    # resume continues the latent run
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert "trained 3 steps" in capsys.readouterr().out
    # bad input: a missing VAE folder, an image size the VAE cannot halve twice
    assert main(["train", "--data", str(data), "--vae", str(tmp_path / "none"), "--out", str(tmp_path / "x"),
                 "--steps", "1"]) == 2
    assert "none: no such file or folder" in capsys.readouterr().err
    assert main(["train", "--data", str(data), "--vae", str(vae), "--image-size", "18", "--out", str(tmp_path / "y"),
                 "--steps", "1"]) == 2
    assert "not divisible by the VAE's downsampling factor f=4" in capsys.readouterr().err

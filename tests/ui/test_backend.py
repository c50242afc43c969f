"""The web UI's backend (no browser, no Gradio): PNG parameters, limits, queue, models folder,
reproducibility, uploads, editing tasks."""
import os
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from helpers import make_models, tiny_model_config
from torchdiffusion.errors import ConfigError
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.pipeline.folders import save_model
from torchdiffusion.pipeline.pipeline import DiffusionPipeline
from torchdiffusion.ui.backend import Backend, GenerateRequest, familiar_sampler_names
from torchdiffusion.ui.jobs import Cancelled, CancelToken, QueueFull, RequestQueue
from torchdiffusion.ui.limits import UILimits
from torchdiffusion.ui.models import ModelLibrary
from torchdiffusion.ui.png_info import (GenerationParams, format_parameters, parse_parameters, read_parameters,
                                        save_png)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (and the CI box is shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def backend(models, tmp_path):
    return Backend(ModelLibrary(models, models / "tiny-class"), UILimits(max_steps=20, max_batch=4, max_queue=3,
                                                                         max_upload_side=512, max_upload_pixels=512 ** 2,
                                                                         max_upload_mb=1.0),
                   outputs=tmp_path / "out")


def pixels(img):
    return np.asarray(img if isinstance(img, Image.Image) else Image.open(img))


# ------------------------------------------------------------------ PNG parameters

def test_parameters_round_trip_text():
    p = GenerationParams(prompt="a seven, slanted\nsecond line", negative_prompt='no "blur": none', steps=17,
                         sampler="DPM++ 2M Karras", guidance_scale=3.5, seed=4294967295, size="28x28",
                         model="runs/mnist", model_hash="0123456789", class_label="7", guidance_rescale=0.7,
                         batch_size=4, batch_pos=3, task="txt2img", version="torchdiffusion 0.1.0")
    text = format_parameters(p)
    assert text.splitlines()[-1].startswith("Steps: 17, Sampler: DPM++ 2M Karras, CFG scale: 3.5, Seed: 4294967295")
    assert parse_parameters(text) == p
    empty = GenerationParams(steps=5, seed=1)
    assert parse_parameters(format_parameters(empty)) == empty


def test_reads_automatic1111_text():
    text = ("masterpiece, a cat\nNegative prompt: ugly, blurry\nSteps: 20, Sampler: Euler a, Schedule type: Karras, "
            "CFG scale: 7, Seed: 3571049442, Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, "
            'Lora hashes: "x: 1, y: 2", Version: v1.9.4')
    p = parse_parameters(text)
    assert (p.prompt, p.negative_prompt, p.steps, p.sampler, p.guidance_scale, p.seed) == \
        ("masterpiece, a cat", "ugly, blurry", 20, "Euler a", 7.0, 3571049442)
    assert p.extra == {"Schedule type": "Karras", "Lora hashes": "x: 1, y: 2"}
    with pytest.raises(ConfigError, match="not 'Steps"):
        parse_parameters("just a caption")


def test_png_chunk_and_bad_files(tmp_path):
    p = GenerationParams(prompt="x", steps=3, seed=9)
    path = save_png(Image.new("L", (4, 4), 128), tmp_path / "a.png", p)
    with Image.open(path) as im:
        assert im.info["parameters"] == format_parameters(p)
    assert read_parameters(path) == p
    Image.new("L", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(ConfigError, match="plain.png: no 'parameters'"):
        read_parameters(tmp_path / "plain.png")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="notes.txt: not a readable image"):
        read_parameters(tmp_path / "notes.txt")


# ------------------------------------------------------------------ limits, models folder

def test_limits_refuse_with_messages(backend):
    with pytest.raises(ConfigError, match=r"steps must be between 1 and 20 \(server limit\), got 21"):
        backend.generate(GenerateRequest(model="tiny", steps=21))
    with pytest.raises(ConfigError, match=r"batch size must be between 1 and 4 \(server limit\), got 9"):
        backend.generate(GenerateRequest(model="tiny", steps=2, batch_size=9))
    with pytest.raises(ConfigError, match="whole number"):
        backend.generate(GenerateRequest(model="tiny", steps="many"))
    with pytest.raises(ConfigError, match="unknown sampler"):
        backend.generate(GenerateRequest(model="tiny", steps=2, sampler="Euler z"))
    with pytest.raises(ConfigError, match="choose a class"):
        backend.generate(GenerateRequest(model="tiny-class", steps=2))
    assert "steps ≤ 20" in backend.limits.summary() and "batch ≤ 4" in backend.limits.summary()


def test_models_folder_refuses_paths_outside(models, tmp_path):
    lib = ModelLibrary(models, models / "tiny")
    assert lib.names() == ["tiny", "tiny-class"]
    outside = tmp_path / "elsewhere"
    make_models(outside)
    link = models / "link-out"
    try:
        os.symlink(outside / "tiny", link)
        for bad in ["../" + outside.name, str(outside / "tiny"), "tiny/../../x", str(link.name)]:
            with pytest.raises(ConfigError, match="refused"):
                lib.resolve(bad)
        assert "link-out" not in lib.names()
    finally:
        link.unlink(missing_ok=True)
    with pytest.raises(ConfigError, match="not a model folder"):
        lib.resolve("nothing-here")
    with pytest.raises(ConfigError, match="not inside the models folder"):
        ModelLibrary(models, outside / "tiny")


def test_sampler_names_are_familiar():
    names = familiar_sampler_names()
    assert {"DPM++ 2M Karras", "Euler a", "DDIM", "UniPC", "ABM"} <= set(names)
    assert "dpmpp_2m" not in names


# ------------------------------------------------------------------ generate, progress, reproduce

def test_generate_png_read_regenerate_identical(backend, models):
    steps = []
    req = GenerateRequest(model="tiny-class", class_label="two", sampler="DPM++ 2M SDE Karras", steps=6,
                          guidance_scale=2.5, seed=11, batch_size=3)
    res = backend.generate(req, on_progress=lambda s, t, p: steps.append((s, t, p is not None)))
    assert [s for s, _, _ in steps] == list(range(1, 7)) and all(t == 6 for _, t, _ in steps)
    assert [s for s, _, prev in steps if prev] == [5]  # x̂₀ preview every 5 steps
    # the pixels are the Python API's
    pipe = DiffusionPipeline.from_pretrained(models / "tiny-class")
    api = pipe.to_pil(pipe.generate(n=3, steps=6, sampler="DPM++ 2M SDE Karras", seed=11, class_labels=2,
                                    guidance_scale=2.5, progress=False))
    for path, ref in zip(res.paths, api):
        assert np.array_equal(pixels(path), pixels(ref))
    # PNG → parameters → the same image, for every position of the batch
    for i, path in enumerate(res.paths):
        p = read_parameters(path)
        assert (p.seed, p.batch_pos, p.batch_size, p.class_label, p.steps) == (11 + i, i, 3, "two", 6)
        again, p2 = backend.reproduce(path)
        assert p2 == p and np.array_equal(pixels(again), pixels(path))


def test_guidance_interval_is_recorded_and_a_png_without_it_was_guided_every_step(backend, models):
    """Today's PNGs record the guidance interval; one without it (AUTOMATIC1111's, or made before it was
    recorded) reproduces with guidance at every step, as it was made."""
    from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE_INTERVAL

    res = backend.generate(GenerateRequest(model="tiny-class", class_label="one", steps=4, seed=5))
    p = res.params[0]
    assert p.guidance_interval == ",".join(f"{v:g}" for v in DEFAULT_GUIDANCE_INTERVAL)
    assert f'Guidance interval: "{p.guidance_interval}"' in Image.open(res.paths[0]).info["parameters"]
    assert read_parameters(res.paths[0]).guidance_interval == p.guidance_interval
    old = parse_parameters("\nSteps: 4, Sampler: ABM, CFG scale: 2, Seed: 5, Model: tiny-class, Class: one")
    assert old.guidance_interval == "all"
    req, _ = backend.request_from_params(old)
    req, info = backend.check(req)
    assert backend._pipeline_kwargs(req, info)["guidance_interval"] is None  # every step
    req, info = backend.check(backend.request_from_params(p)[0])
    assert backend._pipeline_kwargs(req, info)["guidance_interval"] == DEFAULT_GUIDANCE_INTERVAL
    img, _ = backend.reproduce(old)
    pipe = DiffusionPipeline.from_pretrained(models / "tiny-class")
    every = pipe.to_pil(pipe.generate(n=1, steps=4, sampler="ABM", seed=5, class_labels=1, guidance_scale=2.0,
                                      guidance_interval="all", progress=False))[0]
    assert np.array_equal(np.asarray(img), np.asarray(every))
    with pytest.raises(ConfigError, match="guidance interval must be two noise levels"):
        backend.generate(GenerateRequest(model="tiny-class", class_label="one", steps=2, guidance_interval="5,1"))


def test_random_seed_is_recorded(backend):
    res = backend.generate(GenerateRequest(model="tiny", steps=2, seed=-1))
    p = read_parameters(res.paths[0])
    assert 0 <= p.seed < 2 ** 32
    again, _ = backend.reproduce(res.paths[0])
    assert np.array_equal(pixels(again), pixels(res.paths[0]))


def test_cancel_stops_at_the_next_step(backend):
    tok = CancelToken()
    seen = []

    def on_progress(s, t, p):
        seen.append(s)
        if s == 3:
            tok.cancel()

    with pytest.raises(Cancelled):
        backend.generate(GenerateRequest(model="tiny", steps=10, seed=0), on_progress, tok)
    assert seen == [1, 2, 3]
    assert backend.queue.waiting == 0  # the slot was released
    backend.generate(GenerateRequest(model="tiny", steps=1, seed=0))


# ------------------------------------------------------------------ queue

def test_queue_runs_one_at_a_time_in_order():
    q = RequestQueue(max_waiting=10)
    running, peak, order = [0], [0], []
    lock = threading.Lock()

    def job(i):
        with q.slot():
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            order.append(i)
            time.sleep(0.01)
            with lock:
                running[0] -= 1

    threads = []
    for i in range(6):
        t = threading.Thread(target=job, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.002)
    for t in threads:
        t.join()
    assert peak[0] == 1 and sorted(order) == list(range(6)) and q.completed == 6


def test_queue_full_and_cancel_while_waiting():
    q = RequestQueue(max_waiting=1)
    release, started = threading.Event(), threading.Event()

    def holder():
        with q.slot():
            started.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    started.wait(5)
    tok = CancelToken()
    errors = []

    def waiter():
        try:
            with q.slot(tok):
                errors.append("ran")
        except Cancelled:
            errors.append("cancelled")

    w = threading.Thread(target=waiter)
    w.start()
    for _ in range(100):
        if q.waiting == 1:
            break
        time.sleep(0.01)
    with pytest.raises(QueueFull, match="busy"):
        with q.slot():
            pass
    tok.cancel()
    w.join(5)
    release.set()
    t.join(5)
    assert errors == ["cancelled"]
    with q.slot():  # the cancelled ticket does not block the line
        pass


# ------------------------------------------------------------------ uploads and editing

def test_uploads_refused_with_messages(backend, tmp_path):
    (tmp_path / "evil.png").write_bytes(b"#!/bin/sh\necho not an image\n")
    with pytest.raises(ConfigError, match=r"evil.png\): not an image"):
        backend.load_upload(tmp_path / "evil.png")
    Image.new("L", (600, 10)).save(tmp_path / "wide.png")
    with pytest.raises(ConfigError, match="600×10 is too large"):
        backend.load_upload(tmp_path / "wide.png")
    (tmp_path / "big.bin").write_bytes(b"\0" * 1_100_000)
    with pytest.raises(ConfigError, match="over the 1 MB limit"):
        backend.load_upload(tmp_path / "big.bin")
    rgba = Image.new("RGBA", (20, 30), (0, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    img = backend.load_upload(tmp_path / "clear.png", channels=1)
    assert img.mode == "L" and pixels(img).min() == 255  # transparent → white
    assert backend.fit(img, (8, 8)).size == (8, 8)


def test_editing_tasks_write_pngs(backend, tmp_path):
    rng = np.random.RandomState(0)
    Image.fromarray((rng.rand(16, 12) * 255).astype("uint8")).save(tmp_path / "in.png")
    req = GenerateRequest(model="tiny", steps=3, seed=4, sampler="DDIM")
    seen = []
    r = backend.img2img(req, tmp_path / "in.png", 0.5, on_progress=lambda s, t, p: seen.append(s))
    assert seen == [1, 2, 3] and read_parameters(r.paths[0]).task == "img2img"
    assert read_parameters(r.paths[0]).strength == 0.5
    mask = Image.new("RGBA", (12, 16), (0, 0, 0, 0))
    mask.paste((255, 255, 255, 255), (0, 0, 6, 16))
    r = backend.inpaint(req, tmp_path / "in.png", mask)
    m = backend.mask_tensor(mask, (8, 8))[0, 0]
    src = pixels(backend.fit(backend.load_upload(tmp_path / "in.png", channels=1), (8, 8)))
    assert m[:, :4].min() == 1 and m[:, 5:].max() == 0
    assert np.array_equal(pixels(r.paths[0])[:, 5:], src[:, 5:])  # unmasked pixels are kept
    with pytest.raises(ConfigError, match="mask is empty"):
        backend.inpaint(req, tmp_path / "in.png", Image.new("RGBA", (12, 16), (0, 0, 0, 0)))
    r = backend.upscale(req, tmp_path / "in.png", 2)
    assert r.images[0].size == (8, 8) and r.info["lowres"].size == (4, 4)
    r = backend.denoise(req, tmp_path / "in.png", 0.0)
    assert r.info["nfe"] == 1
    r = backend.interpolate(req, 5, 4)
    assert len(r.images) == 4 and r.info["gif"].suffix == ".gif"
    with pytest.raises(ConfigError, match="frames must be between 2 and 32"):
        backend.interpolate(req, 5, 40)

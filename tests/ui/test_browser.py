"""End to end in a real headless browser (Debian's chromium driven by Playwright's Python
package): load the page, set class, seed and steps, click Generate, wait for the image,
download it and compare its pixels with the Python API; upload an image to Inpaint, paint a
mask with the mouse and run it. Skips, saying why, where chromium or playwright is missing
(CI installs neither: ``apt-get install chromium`` and ``pip install playwright`` enable it)."""
import os
import re
import shutil
import tempfile

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio", reason="the web UI needs the 'ui' extra (pip install -e '.[ui]')")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the browser test drives "
                               "/usr/bin/chromium through it)")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
if CHROMIUM is None:
    pytest.skip("no chromium browser: apt-get install -y chromium (Playwright's own browser download is not used)",
                allow_module_level=True)

from helpers import free_port, make_models  # noqa: E402
from torchdiffusion.pipeline.pipeline import DiffusionPipeline  # noqa: E402
from torchdiffusion.sampling.registry import DEFAULT_SAMPLER  # noqa: E402
from torchdiffusion.ui.app import launch  # noqa: E402
from torchdiffusion.ui.backend import Backend  # noqa: E402
from torchdiffusion.ui.limits import UILimits  # noqa: E402
from torchdiffusion.ui.models import ModelLibrary  # noqa: E402
from torchdiffusion.ui.png_info import read_parameters  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    models = make_models(tmp_path_factory.mktemp("models"))
    backend = Backend(ModelLibrary(models, models / "tiny-class"), UILimits(max_steps=20, max_batch=4),
                      outputs=tmp_path_factory.mktemp("outputs"))
    port = free_port()
    demo = launch(backend, port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", models, backend
    finally:
        demo.close()
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def page(served):
    profile = tempfile.mkdtemp(prefix="td-chromium-")
    with sync_api.sync_playwright() as p:
        try:
            ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                       args=CHROMIUM_ARGS, accept_downloads=True,
                                                       viewport={"width": 1280, "height": 1000})
        except Exception as exc:  # a chromium that cannot start here
            pytest.skip(f"chromium at {CHROMIUM} does not start: {exc}")
        pg = ctx.pages[0] if ctx.pages else ctx.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(served[0])
        pg.wait_for_selector("#gen-run")
        yield pg
        ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


def set_number(pg, selector: str, value) -> None:
    box = pg.locator(f"{selector} input[type=number], {selector} input").first
    box.fill(str(value))
    box.press("Enter")


def test_generate_in_browser_equals_python_api(page, served, tmp_path):
    _, models, _ = served
    set_number(page, "#gen-seed", 1234)
    set_number(page, "#gen-steps", 6)
    page.locator("#gen-class input").click()
    page.get_by_role("option", name="two").click()
    page.click("#gen-run")
    page.wait_for_selector("#gen-status .td-status-ok:has-text('done')")
    assert page.locator("#gen-gallery img").count() >= 1  # the image is shown
    params = page.input_value("#gen-params textarea")
    assert f"Steps: 6, Sampler: {DEFAULT_SAMPLER}, CFG scale: 2, Seed: 1234" in params and "Class: two" in params
    with page.expect_download() as dl:
        page.locator("#gen-files a").first.click()
    path = tmp_path / "downloaded.png"
    dl.value.save_as(path)
    p = read_parameters(path)
    assert (p.seed, p.steps, p.class_label, p.sampler) == (1234, 6, "two", DEFAULT_SAMPLER)
    pipe = DiffusionPipeline.from_pretrained(models / "tiny-class")
    want = pipe.to_pil(pipe.generate(n=1, steps=6, sampler=DEFAULT_SAMPLER, seed=1234, class_labels=2,
                                     guidance_scale=2.0, progress=False))[0]
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(want))


def test_paint_a_mask_and_inpaint(page, served, tmp_path):
    rng = np.random.RandomState(0)
    Image.fromarray((rng.rand(64, 64) * 255).astype("uint8")).save(tmp_path / "photo.png")
    page.get_by_role("tab", name="Inpaint").click()
    page.locator("#inpaint-upload input[type=file]").set_input_files(str(tmp_path / "photo.png"))
    page.wait_for_selector("#inpaint-status:has-text('resized to 8×8')")
    canvas = page.locator("#inpaint-editor canvas").first
    canvas.wait_for()
    page.wait_for_timeout(1000)
    box = canvas.bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x0 + 0.3 * w, y0 + 0.2 * h)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x0 + 0.3 * w, y0 + (0.2 + 0.06 * k) * h, steps=2)
    page.mouse.up()
    set_number(page, "#inpaint-steps", 4)
    page.click("#inpaint-run")
    page.wait_for_selector("#inpaint-status .td-status:has-text('done'), #inpaint-status .td-status-error")
    status = page.inner_text("#inpaint-status")
    assert "done" in status, status
    params = page.input_value("#inpaint-params textarea")
    assert "Task: inpaint" in params
    masked = int(re.search(r"Mask pixels: (\d+)", params).group(1))
    assert 0 < masked < 64  # a stroke, not the whole image
    assert page.locator("#inpaint-out img").count() >= 1

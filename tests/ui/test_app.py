"""The Gradio app over loopback HTTP (Gradio's Python client; no browser): generate equals the
Python API pixel for pixel, the PNG carries its parameters, bad input comes back as a message."""
import html
import socket

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio", reason="the web UI needs the 'ui' extra (pip install -e '.[ui]')")
gradio_client = pytest.importorskip("gradio_client")

from helpers import free_port, make_models  # noqa: E402
from torchdiffusion.pipeline.pipeline import DiffusionPipeline  # noqa: E402
from torchdiffusion.ui.app import launch  # noqa: E402
from torchdiffusion.ui.backend import Backend  # noqa: E402
from torchdiffusion.ui.limits import UILimits  # noqa: E402
from torchdiffusion.ui.models import ModelLibrary  # noqa: E402
from torchdiffusion.ui.png_info import read_parameters  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    models = make_models(tmp_path_factory.mktemp("models"))
    backend = Backend(ModelLibrary(models, models / "tiny-class"), UILimits(max_steps=12, max_batch=3),
                      outputs=tmp_path_factory.mktemp("outputs"))
    port = free_port()
    demo = launch(backend, port=port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", models, backend
    finally:
        demo.close()
        torch.set_num_threads(n)


def _path(item):
    if isinstance(item, dict):
        item = item.get("image") or item.get("path") or item.get("name")
        if isinstance(item, dict):
            item = item.get("path")
    return item


def test_page_and_limits_shown(server):
    import httpx

    url, _, _ = server
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200
    cfg = httpx.get(url + "config", timeout=30).json()
    texts = " ".join(str(c.get("props", {}).get("value", "")) for c in cfg["components"])
    assert "steps ≤ 12" in texts and "batch ≤ 3" in texts


def test_generate_over_http_matches_python_api(server):
    url, models, _ = server
    client = gradio_client.Client(url, verbose=False)
    out = client.predict("tiny-class", "", "", "one", "Euler a", 4, 2.0, 77, 2, api_name="/generate")
    progress, status, _preview, gallery, files, params = out
    assert "done: 2 image(s), seed 77" in status and 'data-step="4"' in progress
    assert params.splitlines()[-1].startswith("Steps: 4, Sampler: Euler a, CFG scale: 2, Seed: 77")
    pipe = DiffusionPipeline.from_pretrained(models / "tiny-class")
    ref = pipe.to_pil(pipe.generate(n=2, steps=4, sampler="Euler a", seed=77, class_labels=1, guidance_scale=2.0,
                                    progress=False))
    paths = [_path(f) for f in files]
    for i, (path, want) in enumerate(zip(paths, ref)):
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(want))
        p = read_parameters(path)
        assert (p.seed, p.batch_pos, p.class_label) == (77 + i, i, "one")
    assert [np.asarray(Image.open(_path(g))).tolist() for g in gallery] == [np.asarray(r).tolist() for r in ref]


def test_bad_input_is_a_message(server, tmp_path):
    url, _, _ = server
    client = gradio_client.Client(url, verbose=False)
    # the sliders' bounds are the limits, so Gradio refuses first; the backend checks again (test_ui.py)
    with pytest.raises(Exception, match="greater than maximum value 12|server limit"):
        client.predict("tiny-class", "", "", "one", "DDIM", 500, 2.0, 1, 1, api_name="/generate")
    with pytest.raises(Exception, match="greater than maximum value 3|server limit"):
        client.predict("tiny-class", "", "", "one", "DDIM", 2, 2.0, 1, 50, api_name="/generate")
    with pytest.raises(Exception, match="nine is not in the list of choices"):
        client.predict("tiny-class", "", "", "nine", "DDIM", 2, 2.0, 1, 1, api_name="/generate")
    Image.new("L", (8, 8)).save(tmp_path / "plain.png")
    status, _ = client.predict(gradio_client.handle_file(str(tmp_path / "plain.png")), api_name="/reproduce")
    assert "plain.png: no 'parameters' text chunk" in html.unescape(status) and "Traceback" not in status
    with pytest.raises(Exception, match="not in the list of choices|refused"):
        client.predict("../elsewhere", "", "", "one", "DDIM", 2, 2.0, 1, 1, api_name="/generate")
    (tmp_path / "fake.png").write_text("not a png at all")
    out = client.predict(gradio_client.handle_file(str(tmp_path / "fake.png")), api_name="/read_parameters")
    assert "not a readable image" in out[1]


def test_app_builds_for_an_unconditional_model(server):
    from torchdiffusion.ui.app import build_app

    _, models, backend = server
    demo = build_app(Backend(ModelLibrary(models, models / "tiny"), backend.limits, outputs=backend.outputs))
    assert demo is not None

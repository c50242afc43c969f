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


def _status_of(out) -> str:
    return html.unescape(out[1])


def test_bad_input_is_a_message(server, tmp_path):
    url, _, _ = server
    client = gradio_client.Client(url, verbose=False)
    # past the sliders' bounds or choices: the backend's own check answers, in the status line
    for args, want in [((500, 2.0, 1, 1), "steps must be between 1 and 12 (server limit), got 500"),
                       ((2, 2.0, 1, 50), "batch size must be between 1 and 3 (server limit), got 50")]:
        out = client.predict("tiny-class", "", "", "one", "DDIM", *args, api_name="/generate")
        assert want in _status_of(out) and "td-status-error" in out[1]
    out = client.predict("tiny-class", "", "", "nine", "DDIM", 2, 2.0, 1, 1, api_name="/generate")
    assert "unknown class 'nine'; this model's classes are zero, one, two" in _status_of(out)
    out = client.predict("../elsewhere", "", "", "one", "DDIM", 2, 2.0, 1, 1, api_name="/generate")
    assert "model '../elsewhere' refused" in _status_of(out)
    Image.new("L", (8, 8)).save(tmp_path / "plain.png")
    status, _ = client.predict(gradio_client.handle_file(str(tmp_path / "plain.png")), api_name="/reproduce")
    assert "plain.png: no 'parameters' text chunk" in html.unescape(status) and "Traceback" not in status
    (tmp_path / "fake.png").write_text("not a png at all")
    out = client.predict(gradio_client.handle_file(str(tmp_path / "fake.png")), api_name="/read_parameters")
    assert "not a readable image" in out[1]


GOOD = '"tiny-class", "", "", "one", "DDIM", 2, 2.0, 1, 1'
# raw JSON bodies a client can send to the HTTP API (NaN/Infinity are JSON extensions Python's parser
# accepts), with the message each must get: in the status line, or as the error event's text
HOSTILE = [
    ("generate", '"tiny-class", "", "", "one", "DDIM", "abc", 2.0, 1, 1', "steps must be a whole number, got 'abc'"),
    ("generate", '"tiny-class", "", "", "one", "DDIM", null, 2.0, 1, 1', "steps must be a whole number, got None"),
    ("generate", '"tiny-class", "", "", "one", "DDIM", [1], 2.0, 1, 1', "steps must be a whole number, got [1]"),
    ("generate", '"tiny-class", "", "", "one", "DDIM", Infinity, 2.0, 1, 1', "steps must be a whole number, got inf"),
    ("generate", '"tiny-class", "", "", "one", "DDIM", 2, 2.0, NaN, 1', "seed must be a whole number"),
    ("generate", '"tiny-class", "", "", "one", "DDIM", 2, 2.0, "x", 1', "seed must be a whole number"),
    ("generate", '"tiny-class", "", "", "one", "DDIM", 2, "hi", 1, 1', "guidance scale must be a number"),
    ("generate", '"tiny-class", "", "", "one", "DDIM", 2, 2.0, 1, null', "batch size must be a whole number"),
    ("generate", '"tiny-class", "", "", "one", null, 2, 2.0, 1, 1', "a sampler is given by name"),
    ("generate", '"tiny-class", "", "", "one", "DDIM", 2, 2.0, 1e30, 1', "seed must be between 0 and"),
    ("generate", '"tiny-class"', "this endpoint takes 9 input(s), got 1"),
    ("reproduce", '{"path": 5}', "input 'PNG': not a value it accepts"),
    ("reproduce", '"/etc/passwd"', "input 'PNG': not a value it accepts"),
    ("reproduce", '{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}',
     "input 'PNG': its file is not one uploaded to this server"),
    ("upscale", '"tiny-class", "", "", "one", "DDPM", 2, 1.0, 1, null, "abc"', "upscale factor must be a whole number"),
    ("inpaint", '"tiny-class", "", "", "one", "DDIM", 2, 1.0, 1, null, {"background": 7}, 1',
     "not a value it accepts"),
    ("denoise", '"tiny-class", "", "", "one", "DDPM", 2, 1.0, 1, null, "x", [1]', "denoise method must be"),
]


def _call(url: str, api: str, body: str) -> tuple[str, str]:
    """POST a raw JSON body to /gradio_api/call/API; return the final event's (kind, data)."""
    import httpx

    base = url + "gradio_api/call/" + api
    r = httpx.post(base, content='{"data": [' + body + "]}", headers={"content-type": "application/json"},
                   timeout=60)
    assert r.status_code == 200, r.text
    stream = httpx.get(base + "/" + r.json()["event_id"], timeout=120).text
    events = [block for block in stream.split("\n\n") if block.startswith("event:")]
    kind, _, data = events[-1].partition("\n")
    return kind.split(":", 1)[1].strip(), data.split(":", 1)[1].strip()


def test_hostile_api_values_get_a_message_and_one_log_line(server, capfd, caplog):
    """Values Gradio's own preprocessing cannot take (text for a number, null, NaN, a list, a
    malformed file record, the wrong number of inputs) reach the client as our message, never as
    Gradio's bare ``error: None``; the server logs one line per refusal and no traceback."""
    import json
    import logging

    url, _, _ = server
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="torchdiffusion.ui"):
        for api, body, want in HOSTILE:
            kind, data = _call(url, api, body)
            if kind == "complete":
                message = html.unescape(json.loads(data)[1])
                assert "td-status-error" in message, (body, message)
            else:
                assert kind == "error", (body, kind, data)
                message = json.loads(data)["error"]
            assert want in message, (api, body, message)
            assert "Traceback" not in message and "internal error" not in message
    refused = [r for r in caplog.records if r.getMessage().startswith("web UI refused a request")]
    assert len(refused) == len(HOSTILE)
    assert all("\n" not in r.getMessage() for r in refused)
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-2000:]
    kind, data = _call(url, "generate", GOOD)  # the server is still fine
    assert kind == "complete" and "done: 1 image(s)" in json.loads(data)[1]


def test_input_components_write_no_stub_files(server):
    """Gradio's metaclass writes a .pyi beside every new component class; ours must not."""
    from pathlib import Path

    from torchdiffusion.ui import inputs

    assert not Path(inputs.__file__).with_suffix(".pyi").exists()


def test_app_builds_for_an_unconditional_model(server):
    from torchdiffusion.ui.app import build_app

    _, models, backend = server
    demo = build_app(Backend(ModelLibrary(models, models / "tiny"), backend.limits, outputs=backend.outputs))
    assert demo is not None

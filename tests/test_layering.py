"""The import rule of the layout (README "Layout"): a module imports only from its own layer or a
lower one, and no set of modules imports itself in a circle. Every import counts, including the
ones inside functions. Read with ``ast``; nothing is imported."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "torchdiffusion"
LAYERS = {  # folder (or root module) → layer; higher layers may import lower ones only
    "errors": 0, "config": 0, "assets": 0,
    "io": 1,
    "data": 2, "diffusion": 2, "networks": 2,
    "denoiser": 3, "sampling": 3,
    "pipeline": 4,
    "tasks": 5, "evaluation": 5,
    "training": 6,
    "cli": 7, "ui": 7, "__main__": 7, "torchdiffusion": 8,  # the package __init__: the public face
}
FORBIDDEN = {("sampling", "denoiser"), ("denoiser", "sampling"), ("data", "networks"), ("networks", "data"),
             ("data", "diffusion"), ("diffusion", "data"), ("networks", "diffusion"),
             ("tasks", "evaluation"), ("evaluation", "tasks"), ("ui", "cli")}  # same-layer pairs kept apart
MAX_ROOT_MODULES, MAX_LINES = 6, 600


def modules(pkg: Path = PKG) -> dict[str, Path]:
    out = {}
    for f in sorted(pkg.rglob("*.py")):
        parts = list(f.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for name, f in mods.items():
        base = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    parts = base.split(".")
                    mod = ".".join(parts[: len(parts) - node.level + 1] + ([mod] if mod else []))
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):
                    found.add(t)
        graph[name] = found
    return graph


def layer_of(name: str) -> tuple[str, int]:
    parts = name.split(".")
    key = parts[1] if len(parts) > 1 else "torchdiffusion"
    return key, LAYERS[key]


def test_every_module_has_a_layer():
    unknown = sorted(m for m in modules() if (m.split(".") + ["torchdiffusion"])[1] not in LAYERS)
    assert not unknown, f"modules outside every layer: {unknown}"


def test_no_upward_import():
    bad = []
    for src, targets in imports(modules()).items():
        (a, la) = layer_of(src)
        for t in targets:
            (b, lb) = layer_of(t)
            if lb > la or (a, b) in FORBIDDEN:
                bad.append(f"{src} (layer {la}) imports {t} (layer {lb})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_circle():
    graph = imports(modules())
    state, cycles = {}, []

    def visit(v, path):
        state[v] = "open"
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                cycles.append(" -> ".join(path[path.index(w):] + [w]))
            elif w not in state:
                visit(w, path + [w])
        state[v] = "done"

    for v in sorted(graph):
        if v not in state:
            visit(v, [v])
    assert not cycles, "\n".join(cycles)


def test_root_stays_small_and_modules_short():
    mods = modules()
    root = [m for m, f in mods.items() if f.parent == PKG and f.name != "__init__.py"]
    assert len(root) <= MAX_ROOT_MODULES, root
    long = {m: n for m, f in mods.items() if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_the_checker_sees_a_planted_violation(tmp_path):
    """The rule fails when broken: an io module importing training is an upward import."""
    fake = tmp_path / "torchdiffusion"
    (fake / "io").mkdir(parents=True)
    (fake / "training").mkdir()
    for p in ("__init__.py", "io/__init__.py", "training/__init__.py"):
        (fake / p).write_text("")
    (fake / "io" / "runs.py").write_text("def f():\n    from torchdiffusion.training.loop import fit\n")
    (fake / "training" / "loop.py").write_text("from ..io.runs import f\n")
    graph = imports(modules(fake))
    assert graph["torchdiffusion.io.runs"] == {"torchdiffusion.training.loop"}
    assert graph["torchdiffusion.training.loop"] == {"torchdiffusion.io.runs"}

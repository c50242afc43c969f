"""Checkpoints on disk: safetensors tensors + JSON, written atomically, verified on load.

A checkpoint is a folder of ``*.safetensors`` and ``*.json`` files plus ``manifest.json``
(format name and version, the SHA-256 of every file). It is written into a temporary
sibling folder, flushed to disk, then renamed into place, so a process killed at any moment
leaves either the old or the new checkpoint, never a half-written one. Loading checks the
manifest and every checksum; nothing is ever unpickled.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from torchdiffusion.io import faults
from torchdiffusion.errors import CheckpointError

FORMAT = "torchdiffusion"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file via temp file + ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_checkpoint(folder: Path, tensors: dict[str, dict[str, torch.Tensor]], jsons: dict[str, dict],
                     kind: str) -> Path:
    """Atomically write ``folder`` holding ``{name}.safetensors`` for each entry of
    ``tensors`` and ``{name}.json`` for each entry of ``jsons``; ``kind`` names what it is
    ('model', 'training-checkpoint', …) and is checked on load."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(folder.parent)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as exc:
        raise _write_error(folder, exc) from None
    old = None
    try:
        files = {}
        for name, tdict in tensors.items():
            path = tmp / f"{name}.safetensors"
            save_file({k: v.detach().contiguous().cpu() for k, v in tdict.items()}, str(path))
            files[path.name] = path
            faults.point("checkpoint-file")
        for name, obj in jsons.items():
            path = tmp / f"{name}.json"
            path.write_text(json.dumps(obj, indent=2, sort_keys=True))
            files[path.name] = path
            faults.point("checkpoint-file")
        for path in files.values():
            _fsync(path)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
                    "files": {n: _sha256(p) for n, p in files.items()}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _fsync(tmp / MANIFEST)
        faults.point("checkpoint-commit")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not folder.exists():
            os.replace(old, folder)  # put the previous version back
        if isinstance(exc, (OSError, SafetensorError)):  # disk full, read-only, quota, I/O error: one line
            raise _write_error(folder, exc) from None
        raise
    return folder


def _write_error(folder: Path, exc: OSError | SafetensorError) -> CheckpointError:
    if isinstance(exc, SafetensorError):  # the Rust writer's I/O errors: "... (os error 28)"
        m = re.search(r"os error (\d+)", str(exc))
        exc = OSError(int(m.group(1)), os.strerror(int(m.group(1)))) if m else OSError(errno.EIO, str(exc))
    why = exc.strerror or str(exc)
    hint = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some disk space (quota exceeded)",
            errno.EROFS: "the file system is read-only: choose a writable folder",
            errno.EACCES: "no permission: choose a writable folder"}.get(exc.errno, "check the disk and folder")
    return CheckpointError(f"{folder}: cannot write it ({why}): {hint}, then run again (a training run: "
                           "with --resume). Nothing already on disk was changed.")


_STALE_RE = re.compile(r"^\.(.+)\.(tmp|old|trash)-(\d+)$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale(parent: Path) -> list[Path]:
    """Tidy what a killed writer left in ``parent``: delete the hidden ``.NAME.tmp-PID`` and
    ``.NAME.trash-PID`` entries of processes no longer alive, and move a ``.NAME.old-PID`` (the
    previous version, moved aside just before the new one was renamed in) back to ``NAME`` when
    ``NAME`` is missing. Returns the entries deleted."""
    removed = []
    try:
        entries = sorted(Path(parent).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _STALE_RE.match(p.name)
        if not m or _alive(int(m.group(3))):
            continue
        target = p.with_name(m.group(1))
        if m.group(2) == "old" and not target.exists():
            os.replace(p, target)
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def remove_checkpoint(folder: Path) -> None:
    """Delete a checkpoint folder so that a kill at any moment leaves no half-deleted checkpoint:
    it is first renamed to a hidden name (atomic), then removed."""
    folder = Path(folder)
    trash = folder.with_name(f".{folder.name}.trash-{os.getpid()}")
    os.replace(folder, trash)
    faults.point("checkpoint-prune")
    shutil.rmtree(trash, ignore_errors=True)


def verify_checkpoint(folder: Path, kind: str | None = None) -> dict:
    """Check that ``folder`` is a complete checkpoint of ``kind``; return its manifest."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder (expected a torchdiffusion checkpoint folder)")
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"{folder}: not a torchdiffusion checkpoint (no {MANIFEST})")
    manifest = load_json_file(mpath, "manifest", expect=None)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{mpath}: not a torchdiffusion manifest")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{mpath}: invalid checkpoint format version {version!r} (expected an integer ≥ 1)")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{folder}: checkpoint format version {version} is newer than this "
                              f"torchdiffusion understands ({FORMAT_VERSION}); upgrade torchdiffusion")
    if kind is not None and manifest.get("kind") != kind:
        raise CheckpointError(f"{folder}: holds a {manifest.get('kind')!r}, expected a {kind!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{mpath}: the manifest lists no files (expected {{name: sha256}})")
    for name, digest in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in (".", "..", MANIFEST):
            raise CheckpointError(f"{mpath}: file name {name!r} points outside the checkpoint folder")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise CheckpointError(f"{mpath}: {name}: invalid sha256 {digest!r}")
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from checkpoint")
        if _sha256(path) != digest:
            raise CheckpointError(f"{path}: checksum mismatch (file is truncated or corrupted)")
    return manifest


def read_tensors(folder: Path, name: str) -> dict[str, torch.Tensor]:
    path = Path(folder) / f"{name}.safetensors"
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


MAX_JSON_BYTES = 16 << 20  # a config, state or index file is a few KB; anything this big is not ours
MAX_JSON_DEPTH = 32  # ours nest at most 5 levels; deeper input would exhaust Python's recursion


def json_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON ``text`` (brackets inside strings ignored)."""
    depth = deepest = 0
    in_string = escape = False
    for ch in text:
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def load_json_file(path: Path, what: str = "JSON file", error=CheckpointError, max_bytes: int = MAX_JSON_BYTES,
                   max_depth: int = MAX_JSON_DEPTH, expect=dict):
    """The JSON value in ``path``, of type ``expect``; size, nesting depth, encoding and syntax
    checked first, so a hostile file gives ``error`` naming it and what is wrong, never a
    RecursionError, a MemoryError or a traceback."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: {what} is {size:,} bytes, over the {max_bytes:,}-byte limit")
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(raw) > max_bytes:
        raise error(f"{path}: {what} is over the {max_bytes:,}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if json_depth(text) > max_depth:
        raise error(f"{path}: {what} nests deeper than {max_depth} levels; not a torchdiffusion file")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise error(f"{path}: {what} is not valid JSON ({exc})") from None
    if expect is not None and not isinstance(value, expect):
        raise error(f"{path}: {what} holds a JSON {type(value).__name__}, expected an object")
    return value


def read_json(folder: Path, name: str) -> dict:
    return load_json_file(Path(folder) / f"{name}.json", f"{name}.json")


def load_state_dict_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load weights, turning key or shape mismatches into a CheckpointError naming the file."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        raise CheckpointError(f"{source}: weights are from another model: " + "; ".join(parts))
    module.load_state_dict(state)


MAX_STEP = 10**12  # no run takes a trillion optimizer steps; a larger count is a damaged or forged file


def check_state(folder: Path, state: dict, optimizers: tuple[str, ...] = ("optimizer",),
                counts: tuple[str, ...] = ("step", "ema_updates")) -> dict:
    """A checkpoint's ``state.json`` checked like ``config.json``: every key the trainer reads
    is present and of its type and range, or a :class:`CheckpointError` names the key."""
    path = Path(folder) / "state.json"

    def bad(key, why):
        raise CheckpointError(f"{path}: {key!r} {why}; the checkpoint is damaged (resume from another one, or "
                              "start a new run)")
    for key in counts:
        v = state.get(key)
        if key not in state:
            bad(key, "is missing")
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_STEP:
            bad(key, f"must be a whole number from 0 to {MAX_STEP:.0e}, got {v!r}")
    v = state.get("elapsed_s")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        bad("elapsed_s", f"must be a finite number of seconds ≥ 0, got {v!r}")
    v = state.get("nan_skipped", 0)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_STEP:
        bad("nan_skipped", f"must be a whole number ≥ 0, got {v!r}")
    for key in optimizers:
        meta = state.get(key)
        if not isinstance(meta, dict) or not isinstance(meta.get("param_groups"), list):
            bad(key, "must be an object with the optimizer's 'param_groups'")
    if not isinstance(state.get("train_config"), dict):
        bad("train_config", "must be an object with the run's training options")
    return state


def restore_rng(folder: Path, rng: dict, generator: torch.Generator) -> None:
    """Set the run's data generator and the global CPU generator from a checkpoint's
    ``rng.safetensors``, or raise a :class:`CheckpointError` (a state of the wrong size or type
    would otherwise be a RuntimeError from torch, or silently another random stream)."""
    path = Path(folder) / "rng.safetensors"
    for key in ("generator", "torch_cpu"):
        t = rng.get(key)
        if t is None:
            raise CheckpointError(f"{path}: the random state {key!r} is missing")
        if t.dtype != torch.uint8 or t.ndim != 1 or t.numel() != generator.get_state().numel():
            raise CheckpointError(f"{path}: the random state {key!r} is not a CPU generator state "
                                  f"({t.dtype}, {tuple(t.shape)})")
    try:
        generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch_cpu"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: unusable random state ({exc})") from None

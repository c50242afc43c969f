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
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{mpath}: unreadable manifest ({exc})") from None
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


def read_json(folder: Path, name: str) -> dict:
    path = Path(folder) / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON file ({exc})") from None


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

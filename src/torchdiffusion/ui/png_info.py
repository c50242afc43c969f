"""Generation parameters in a PNG ``parameters`` text chunk, in AUTOMATIC1111's format.

AUTOMATIC1111's web UI (and ComfyUI's and Fooocus's importers, civitai, ``exiftool``) read
one ``tEXt`` chunk named ``parameters`` laid out as::

    a handwritten seven                       ← prompt (any number of lines; may be empty)
    Negative prompt: a blurry one             ← optional, may continue over lines
    Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 3, Seed: 1234, Size: 28x28, Model hash: 3a7c9e01f2, Model: mnist

The last line is comma-separated ``Key: value`` pairs; a value holding ``,``, ``:`` or a
newline is written as a JSON string. We add our own keys after the usual ones (``Class``,
``Batch size``/``Batch pos`` as AUTOMATIC1111 does, ``Task``, ``Denoising strength``,
``Version``) — readers ignore keys they do not know. :func:`format_parameters` and
:func:`parse_parameters` are inverse: ``parse(format(p)) == p`` for every
:class:`GenerationParams`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from PIL import Image, PngImagePlugin

from torchdiffusion.errors import ConfigError
from torchdiffusion.io.images import save_image

PNG_KEY = "parameters"
NEGATIVE = "Negative prompt:"

# A1111's own key names for the fields it knows; ours for the rest.
_KEYS = [  # (field, key in the text, type)
    ("steps", "Steps", int),
    ("sampler", "Sampler", str),
    ("guidance_scale", "CFG scale", float),
    ("seed", "Seed", int),
    ("size", "Size", str),
    ("model_hash", "Model hash", str),
    ("model", "Model", str),
    ("class_label", "Class", str),
    ("guidance_rescale", "Guidance rescale", float),
    ("guidance_interval", "Guidance interval", str),
    ("strength", "Denoising strength", float),
    ("batch_size", "Batch size", int),
    ("batch_pos", "Batch pos", int),
    ("task", "Task", str),
    ("version", "Version", str),
]
_BY_KEY = {key: (name, typ) for name, key, typ in _KEYS}
# a PNG without "Guidance interval" (AUTOMATIC1111's, or ours before it was recorded) was guided at every step
_DEFAULTS_OMITTED = {"guidance_rescale": 0.0, "guidance_interval": "all", "batch_size": 1, "batch_pos": 0,
                     "task": "txt2img"}


@dataclass
class GenerationParams:
    """Everything that determines one generated image (with the model's weights).

    Image ``batch_pos`` of a call with ``batch_size`` images and first seed ``seed - batch_pos``
    is this image: :meth:`~torchdiffusion.ui.backend.Backend.reproduce` reruns that call.
    """

    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 30
    sampler: str = "DPM++ 2M Karras"
    guidance_scale: float = 1.0
    seed: int = 0
    size: str = ""  # "WxH"
    model: str = ""
    model_hash: str = ""
    class_label: str | None = None
    guidance_rescale: float = 0.0
    guidance_interval: str = "all"  # "LO,HI": guided only for LO < σ ≤ HI
    strength: float | None = None
    batch_size: int = 1
    batch_pos: int = 0
    task: str = "txt2img"
    version: str = ""
    extra: dict = field(default_factory=dict)  # keys we do not know, kept verbatim


def _quote(text: str) -> str:
    text = str(text)
    if any(c in text for c in ',:\n"') or text != text.strip():
        return json.dumps(text, ensure_ascii=False)
    return text


def _fmt_number(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v) if isinstance(v, float) else str(v)


def format_parameters(p: GenerationParams) -> str:
    """The ``parameters`` text of ``p`` (see the module docstring for the layout)."""
    lines = [p.prompt]
    if p.negative_prompt:
        lines.append(f"{NEGATIVE} {p.negative_prompt}")
    pairs = []
    for name, key, typ in _KEYS:
        v = getattr(p, name)
        if v is None or v == "" or (name in _DEFAULTS_OMITTED and v == _DEFAULTS_OMITTED[name]):
            continue
        pairs.append(f"{key}: {_fmt_number(v) if typ in (int, float) else _quote(v)}")
    pairs += [f"{k}: {_quote(v)}" for k, v in p.extra.items()]
    lines.append(", ".join(pairs))
    return "\n".join(lines)


# key: a word then words/spaces/-/; value: a JSON string or anything up to the next comma
_PAIR = re.compile(r'\s*([A-Za-z][\w \-/]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _parse_pairs(line: str) -> dict[str, str] | None:
    """``Key: value, …`` → dict, or None when ``line`` is not a parameter line."""
    out, pos = {}, 0
    line = line.strip()
    while pos < len(line):
        m = _PAIR.match(line, pos)
        if m is None or m.end() == pos:
            return None
        key, value = m.group(1).strip(), m.group(2).strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return None
        out[key] = value
        pos = m.end()
    return out or None


def parse_parameters(text: str) -> GenerationParams:
    """Inverse of :func:`format_parameters`; also reads AUTOMATIC1111's own PNGs (keys we do
    not use land in ``extra``). Raises :class:`ConfigError` if ``text`` has no parameter line."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("no generation parameters: the 'parameters' text is empty")
    lines = text.split("\n")
    pairs = _parse_pairs(lines[-1])
    if pairs is None or "Steps" not in pairs and "Seed" not in pairs:
        raise ConfigError("no generation parameters: the last line of the 'parameters' text is not "
                          f"'Steps: …, Sampler: …, Seed: …' (got {lines[-1][:80]!r})")
    head = lines[:-1]
    prompt_lines, neg_lines, in_neg = [], [], False
    for line in head:
        if line.startswith(NEGATIVE):
            in_neg = True
            line = line[len(NEGATIVE):].lstrip(" ")
        (neg_lines if in_neg else prompt_lines).append(line)
    p = GenerationParams(prompt="\n".join(prompt_lines), negative_prompt="\n".join(neg_lines),
                         batch_size=1, batch_pos=0, task="txt2img")
    for key, value in pairs.items():
        if key not in _BY_KEY:
            p.extra[key] = value
            continue
        name, typ = _BY_KEY[key]
        try:
            setattr(p, name, typ(float(value)) if typ is int else typ(value))
        except ValueError:
            raise ConfigError(f"generation parameters: {key} must be a number, got {value!r}") from None
    return p


def pnginfo_for(p: GenerationParams) -> PngImagePlugin.PngInfo:
    """A ``PngInfo`` holding the ``parameters`` chunk, for ``Image.save(..., pnginfo=…)``."""
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_KEY, format_parameters(p))
    return info


def save_png(img: Image.Image, path: str | Path, p: GenerationParams) -> Path:
    """Write ``img`` as a PNG carrying ``p`` (atomically: temp file + rename)."""
    return save_image(img, Path(path), pnginfo=pnginfo_for(p))


def read_parameters(source) -> GenerationParams:
    """The parameters of a PNG given as a path or an open PIL image. Raises
    :class:`ConfigError` naming the file when it is not an image or carries no parameters."""
    name = getattr(source, "filename", None) or str(source)
    if isinstance(source, Image.Image):
        text = source.info.get(PNG_KEY)
    else:
        from torchdiffusion.ui.limits import UILimits

        lim = UILimits()
        try:
            with Image.open(source) as img:
                lim.check_upload_size(*img.size, name=Path(name).name)  # from the header, before decoding
                img.load()
                text = img.info.get(PNG_KEY)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ConfigError(f"{Path(name).name}: not a readable image ({exc})") from None
    if text is None:
        raise ConfigError(f"{Path(name).name}: no 'parameters' text chunk (not made by torchdiffusion or "
                          "AUTOMATIC1111, or its metadata was stripped)")
    return parse_parameters(text)


def params_fields() -> list[str]:
    return [f.name for f in fields(GenerationParams)]

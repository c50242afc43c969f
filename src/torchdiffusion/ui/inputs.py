"""Gradio input components and a Blocks that leave every check to the backend.

Gradio validates each input before our handler runs (``Number``/``Slider`` bounds and rounding,
``Dropdown``/``Radio`` choices, the file payload's schema). Over the HTTP API a client can send
anything there — a string for the steps, ``null`` for the batch size, a JSON ``NaN`` seed, a list,
a malformed file record — and Gradio's own check then fails with a ``TypeError`` or a pydantic
error: the client gets ``error: None`` (the app runs with ``show_error=False``) and the server
prints a traceback for every such request.

Here instead:

* :class:`Number`, :class:`Slider`, :class:`Dropdown` and :class:`Radio` never fail in
  preprocessing: a value Gradio would refuse reaches the handler unchanged, and
  :class:`~.backend.Backend` refuses it with its own message (the status line of the request);
* :class:`Blocks` turns any failure left in Gradio's preprocessing (a request with the wrong number
  of inputs, a file record that is not one) into a ``gr.Error`` that names the input and the
  problem — delivered to the client whatever ``show_error`` says — and logs one line, no traceback;
* :func:`~.jobs.refusal` is that one log line, used by the handlers for every refused request too.
"""
import importlib
from contextlib import contextmanager

import gradio as gr

from torchdiffusion.io.images import safe_name
from torchdiffusion.ui.jobs import refusal, shown


class _PassThrough:
    """Preprocess as Gradio does when it can; otherwise hand the raw value to the handler."""

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except Exception:  # noqa: BLE001 - the backend checks it and says what is wrong
            return payload


@contextmanager
def _no_stub_files():
    """Gradio's component metaclass writes a ``.pyi`` stub beside the source of every new
    component class (a tool for custom-component authors); ours must not write into the
    installed package, so the writer is a no-op while these four classes are made."""
    meta = importlib.import_module("gradio.component_meta")
    writer = getattr(meta, "create_or_modify_pyi", None)
    if writer is not None:
        meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        if writer is not None:
            meta.create_or_modify_pyi = writer


with _no_stub_files():
    class Number(_PassThrough, gr.Number):
        """``gr.Number`` whose hostile values (text, null, NaN, out of bounds) reach the backend's check."""

    class Slider(_PassThrough, gr.Slider):
        """``gr.Slider`` whose hostile values reach the backend's check."""

    class Dropdown(_PassThrough, gr.Dropdown):
        """``gr.Dropdown`` whose unknown choices reach the backend's check (model, class, sampler …)."""

    class Radio(_PassThrough, gr.Radio):
        """``gr.Radio`` whose unknown choices reach the backend's check."""


def _input_name(block) -> str:
    label = getattr(block, "label", None) or getattr(block, "elem_id", None) or type(block).__name__
    return safe_name(label)


class Blocks(gr.Blocks):
    """``gr.Blocks`` whose input preprocessing fails with a message, never ``error: None``."""

    async def preprocess_data(self, block_fn, inputs, *args, **kwargs):
        where = str(getattr(block_fn, "api_name", None) or getattr(block_fn, "name", None) or "")
        try:
            return await super().preprocess_data(block_fn, inputs, *args, **kwargs)
        except gr.Error as exc:
            raise gr.Error(refusal(str(exc.message), where), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - a malformed request, reported to its sender
            n_in = len(getattr(block_fn, "inputs", []) or [])
            if not isinstance(inputs, (list, tuple)) or len(inputs) != n_in:
                got = len(inputs) if isinstance(inputs, (list, tuple)) else shown(inputs)
                msg = f"this endpoint takes {n_in} input(s), got {got}"
            else:
                msg = f"an input could not be read ({type(exc).__name__}: {shown(str(exc))})"
                # values that fail their own schema or check first; a well-formed file record last
                pairs = list(zip(block_fn.inputs, inputs))
                for block, value in pairs:
                    reason = _reason(block, value)
                    if reason:
                        msg = f"input {_input_name(block)!r}: {reason}"
                        break
                else:
                    files = [b for b, v in pairs if isinstance(b, FILE_INPUTS) and v is not None]
                    if files:  # Gradio refused to take its file: it was not uploaded to this server
                        msg = (f"input {_input_name(files[0])!r}: its file is not one uploaded to this server "
                               "(upload it first)")
            raise gr.Error(refusal(msg, where), print_exception=False) from exc


FILE_INPUTS = (gr.File, gr.Image, gr.ImageEditor)


def _reason(block, value) -> str | None:
    """Why ``value`` alone fails the component's schema or preprocessing (None: it does not)."""
    model = getattr(block, "data_model", None)
    try:
        if model is not None and value is not None:
            value = model.model_validate(value)
    except Exception:  # noqa: BLE001
        return f"not a value it accepts ({shown(value)})"
    if isinstance(block, FILE_INPUTS):
        return None  # its file is only read when Gradio moves it into the cache
    try:
        block.preprocess(value)
    except Exception:  # noqa: BLE001
        return f"not a value it accepts ({shown(value)})"
    return None

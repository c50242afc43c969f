"""The Gradio app of ``torchdiffusion serve``: tabs over :class:`~.backend.Backend`.

Every heavy event runs through Gradio's queue with one shared concurrency slot
(``concurrency_id="model"``, limit 1, ``max_size = limits.max_queue``) and again through the
backend's :class:`~.jobs.RequestQueue`, so the page stays responsive while requests wait.
Handlers are generators: a worker thread runs the job and the handler streams its progress
(a bar per step, an x̂₀ preview every few steps). Cancel (not queued) sets the session's
:class:`~.jobs.CancelToken`; the sampler callback raises at the next step. Our errors are
shown as a message in the status line (and a toast), never as a traceback.

Uploads come in through ``gr.File`` and are decoded by :meth:`Backend.load_upload` (so a
non-image, a huge image or a decompression bomb is refused with a message), then shown in an
image preview or, for Inpaint, loaded into the ``ImageEditor`` to paint the mask on.
"""
import html
import logging
import queue
import threading
import time

from torchdiffusion.sampling.registry import (DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, EDIT_SAMPLER,
                                              EDIT_STEPS, UPSCALE_SAMPLER)
from torchdiffusion.errors import TorchDiffusionError
from torchdiffusion.ui.backend import Backend, GenerateRequest, enlarge, familiar_sampler_names, random_seed
from torchdiffusion.ui.jobs import Cancelled, refusal
from torchdiffusion.ui.png_info import format_parameters, read_parameters
from torchdiffusion.errors import ConfigError

log = logging.getLogger(__name__)

CSS = """
#td-limits {font-size: 0.85em; opacity: 0.8}
.td-status-error {color: #c0392b; font-weight: 600}
.td-status-ok {color: #1e8449}
.td-progress progress {width: 60%; height: 1em; vertical-align: middle}
.td-pixel img, .td-pixel canvas {image-rendering: pixelated}
"""


def _progress_html(step: int, total: int, seconds: float, note: str = "") -> str:
    return (f'<div class="td-progress" data-step="{step}" data-total="{total}"><progress value="{step}" '
            f'max="{max(total, 1)}"></progress> step {step}/{total} · {seconds:.1f} s {html.escape(note)}</div>')


def _status(msg: str, ok: bool = True) -> str:
    cls = "td-status-ok" if ok else "td-status-error"
    return f'<div class="td-status {cls}">{html.escape(msg)}</div>'


def _message(exc: BaseException, endpoint: str = "") -> str:
    """The message a request's failure shows the user: ours as it is (logged in one line), an
    internal error with its traceback in the server log."""
    if isinstance(exc, TorchDiffusionError):
        return refusal(str(exc), endpoint)
    log.exception("internal error in the web UI", exc_info=exc)
    return f"internal error ({type(exc).__name__}: {exc}); see the server log"


def run_streaming(backend: Backend, session: str, job, endpoint: str = ""):
    """Run ``job(on_progress, token)`` in a thread; yield ("progress", step, total, preview, secs),
    ("waiting", ahead), then ("done", result) or ("error", message) / ("cancelled", message)."""
    token = backend.token_for(session)
    q: queue.Queue = queue.Queue()
    t0 = time.perf_counter()

    def work():
        try:
            q.put(("done", job(lambda s, t, p: q.put(("progress", s, t, p)), token)))
        except Cancelled as exc:
            q.put(("cancelled", str(exc)))
        except BaseException as exc:  # reported to the user as a message
            q.put(("error", _message(exc, endpoint)))

    threading.Thread(target=work, daemon=True, name="td-ui-job").start()
    started = False
    while True:
        try:
            item = q.get(timeout=0.5)
        except queue.Empty:
            if not started:
                yield ("waiting", backend.queue.waiting)
            continue
        kind = item[0]
        if kind == "progress":
            started = True
            yield ("progress", item[1], item[2], item[3], time.perf_counter() - t0)
        else:
            yield item
            return


def build_app(backend: Backend, title: str = "torchdiffusion"):
    """The ``gr.Blocks`` app (call ``.queue(...)`` / ``.launch(...)`` or use :func:`launch`).

    Inputs are :mod:`~.inputs`' pass-through components, so every value a client sends reaches the
    backend's checks and comes back as a message in the status line."""
    import gradio as gr

    from torchdiffusion.ui.inputs import Blocks, Dropdown, Number, Radio, Slider

    lib, lim = backend.library, backend.limits
    samplers = familiar_sampler_names()
    names = lib.names()
    default = lib.default or (names[0] if names else None)
    info0 = backend.model_info(default) if default else None
    missing = backend.available_tasks()
    heavy = dict(concurrency_limit=1, concurrency_id="model")

    def session_of(request) -> str:
        return getattr(request, "session_hash", None) or "anonymous"

    def cond_visibility(info):
        c = info["conditioning"] if info else "none"
        classes = info["classes"] if info and info["classes"] else []
        return c, classes

    def model_md(info) -> str:
        if not info:
            return "No model loaded."
        w, h = info["size"]
        cond = {"none": "unconditional", "text": "text-conditional"}.get(info["conditioning"])
        if info["conditioning"] == "class":
            cond = f"class-conditional ({', '.join(info['classes'])})"
        return (f"**{info['name']}**: {info['parameters'] / 1e6:.2f} M parameters, {w}×{h} px, "
                f"{info['channels']} channel(s), {cond}. Image size is fixed by the model.")

    with Blocks(title=title) as demo:
        gr.Markdown(f"## {title} — generate and edit with your own diffusion models")
        with gr.Row():
            model = Dropdown(names, value=default, label="Model", info=f"folders in {lib.root}",
                                elem_id="td-model", scale=3)
            refresh = gr.Button("↻ Refresh", scale=0, elem_id="td-refresh")
        model_info = gr.Markdown(model_md(info0), elem_id="td-model-info")
        gr.Markdown(lim.summary(), elem_id="td-limits")

        c0, classes0 = cond_visibility(info0)
        all_cond = []  # (prompt, negative, class) of every tab, updated when the model changes

        def conditioning_controls(prefix: str, negative: bool = True):
            with gr.Row():
                prompt = gr.Textbox(label="Prompt", lines=2, visible=c0 == "text", elem_id=f"{prefix}-prompt",
                                    scale=3)
                neg = gr.Textbox(label="Negative prompt", lines=2, visible=c0 == "text" and negative,
                                 elem_id=f"{prefix}-negative", scale=2)
                cls = Dropdown(classes0, value=classes0[0] if classes0 else None, label="Class",
                                  visible=c0 == "class", elem_id=f"{prefix}-class")
            all_cond.append((prompt, neg, cls, negative))
            return prompt, neg, cls

        def sampling_controls(prefix: str, steps: int = DEFAULT_STEPS, seed: bool = True,
                              sampler_name: str = DEFAULT_SAMPLER):
            with gr.Row():
                sampler = Dropdown(samplers, value=sampler_name, label="Sampler", elem_id=f"{prefix}-sampler")
                steps_c = Slider(1, lim.max_steps, value=min(steps, lim.max_steps), step=1,
                                    label=f"Steps (≤ {lim.max_steps})", elem_id=f"{prefix}-steps")
                cfg = Slider(0, 15, value=DEFAULT_GUIDANCE, step=0.5, label="Guidance scale (CFG)", elem_id=f"{prefix}-cfg")
            seed_c = None
            if seed:
                with gr.Row():
                    seed_c = Number(value=0, precision=0, label="Seed (-1 = random)", elem_id=f"{prefix}-seed",
                                       minimum=-1)
                    dice = gr.Button("Random seed", scale=0, elem_id=f"{prefix}-random")
                dice.click(lambda: random_seed(), None, seed_c, queue=False)
            return sampler, steps_c, cfg, seed_c

        def job_outputs(prefix: str):
            with gr.Row():
                go = gr.Button("Run", variant="primary", elem_id=f"{prefix}-run")
                stop = gr.Button("Cancel", variant="stop", elem_id=f"{prefix}-cancel")
            progress = gr.HTML("", elem_id=f"{prefix}-progress")
            status = gr.HTML("", elem_id=f"{prefix}-status")
            return go, stop, progress, status

        def upload_block(prefix: str, label: str):
            f = gr.File(label=f"{label} (PNG/JPEG/WebP…, ≤ {lim.max_upload_mb:g} MB)", file_count="single",
                        type="filepath", elem_id=f"{prefix}-upload", height=110)
            shown = gr.Image(label="Input", type="pil", interactive=False, format="png", elem_id=f"{prefix}-input", elem_classes="td-pixel",
                             height=200)
            return f, shown

        def on_upload(path, model_name):
            if not path:
                return None, ""
            try:
                info = backend.model_info(model_name)
                img = backend.load_upload(path, "upload", info["channels"])
                return enlarge(backend.fit(img, info["size"])), _status(
                    f"loaded {img.width}×{img.height}, resized to {info['size'][0]}×{info['size'][1]} for the model")
            except BaseException as exc:
                return None, _status(_message(exc, "upload"), ok=False)

        def request_of(model_name, prompt, neg, cls, sampler, steps, cfg, seed, batch=1):
            return GenerateRequest(model=model_name, prompt=prompt or "", negative_prompt=neg or "",
                                   class_label=cls, sampler=sampler, steps=steps, guidance_scale=cfg,
                                   seed=-1 if seed is None else seed, batch_size=batch)

        def cancel(request: gr.Request):
            ok = backend.cancel(session_of(request))
            return _status("Cancelling…" if ok else "nothing to cancel", ok=ok)

        # ------------------------------------------------------------ Generate
        with gr.Tabs(elem_id="td-tabs") as tabs:
            with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
                g_prompt, g_neg, g_cls = conditioning_controls("gen")
                g_sampler, g_steps, g_cfg, g_seed = sampling_controls("gen")
                with gr.Row():
                    g_batch = Slider(1, lim.max_batch, value=1, step=1, label=f"Batch size (≤ {lim.max_batch})",
                                        elem_id="gen-batch")
                    w, h = info0["size"] if info0 else (0, 0)
                    g_size = gr.Textbox(f"{w}×{h} (fixed by the model)", label="Image size", interactive=False,
                                        elem_id="gen-size")
                g_go, g_stop, g_progress, g_status = job_outputs("gen")
                with gr.Row():
                    g_preview = gr.Image(label="x̂₀ preview", type="pil", interactive=False, format="png",
                                         elem_id="gen-preview", elem_classes="td-pixel", height=256)
                    g_gallery = gr.Gallery(label="Images", format="png", columns=4, height=300, elem_id="gen-gallery", elem_classes="td-pixel")
                g_files = gr.File(label="Download PNGs (with their parameters)", file_count="multiple",
                                  interactive=False, elem_id="gen-files")
                g_params = gr.Textbox(label="Parameters (PNG 'parameters' chunk of the first image)", lines=3,
                                      interactive=False, elem_id="gen-params")

                def generate(model_name, prompt, neg, cls, sampler, steps, cfg, seed, batch, request: gr.Request):
                    req = request_of(model_name, prompt, neg, cls, sampler, steps, cfg, seed, batch)
                    for ev in run_streaming(backend, session_of(request),
                                            lambda cb, tok: backend.generate(req, cb, tok), "generate"):
                        if ev[0] == "waiting":
                            yield gr.skip(), _status(f"waiting in the queue ({ev[1]} request(s) waiting)"), \
                                gr.skip(), gr.skip(), gr.skip(), gr.skip()
                        elif ev[0] == "progress":
                            _, s, t, prev, secs = ev
                            yield _progress_html(s, t, secs), _status("sampling…"), \
                                (prev if prev is not None else gr.skip()), gr.skip(), gr.skip(), gr.skip()
                        elif ev[0] == "done":
                            r = ev[1]
                            yield (_progress_html(req.steps, req.steps, r.seconds),
                                   _status(f"done: {len(r.images)} image(s), seed {r.params[0].seed}, "
                                           f"{r.seconds:.1f} s"),
                                   gr.skip(), [str(p) for p in r.paths], [str(p) for p in r.paths],
                                   format_parameters(r.params[0]))
                        else:
                            yield gr.skip(), _status(ev[1], ok=False), gr.skip(), \
                                gr.skip(), gr.skip(), gr.skip()

                gen_inputs = [model, g_prompt, g_neg, g_cls, g_sampler, g_steps, g_cfg, g_seed, g_batch]
                g_go.click(generate, gen_inputs,
                                       [g_progress, g_status, g_preview, g_gallery, g_files, g_params],
                                       api_name="generate", show_progress="minimal", **heavy)
                g_stop.click(cancel, None, g_status, queue=False, api_name="cancel")

            # ------------------------------------------------------------ editing tabs
            def edit_tab(name: str, prefix: str, build_extra, run, steps: int = EDIT_STEPS, negative: bool = True,
                         hook=None, sampler_name: str = EDIT_SAMPLER):
                with gr.Tab(name, id=prefix, elem_id=f"tab-{prefix}"):
                    why = missing.get(prefix)
                    if why:
                        gr.Markdown(f"**{name} is not available yet:** {why}.", elem_id=f"{prefix}-missing")
                        return
                    with gr.Row():
                        with gr.Column():
                            ins = build_extra()
                        with gr.Column():
                            prompt, neg, cls = conditioning_controls(prefix, negative)
                            sampler, steps_c, cfg, seed = sampling_controls(prefix, steps, sampler_name=sampler_name)
                    go, stop, progress, status = job_outputs(prefix)
                    with gr.Row():
                        out = gr.Gallery(label="Result", format="png", columns=4, height=300, elem_id=f"{prefix}-out", elem_classes="td-pixel")
                        extra_out = gr.Image(label="", type="filepath", interactive=False, visible=prefix in
                                             ("upscale", "interpolate"), elem_id=f"{prefix}-extra", elem_classes="td-pixel", height=256)
                    files = gr.File(label="Download", file_count="multiple", interactive=False,
                                    elem_id=f"{prefix}-files")
                    params = gr.Textbox(label="Parameters", lines=2, interactive=False, elem_id=f"{prefix}-params")

                    n_extra = len(ins)

                    def handler(model_name, prompt, neg, cls, sampler, steps, cfg, seed, e1=None, e2=None, e3=None,
                                request: gr.Request = None):  # Gradio fills the request; extra inputs ≤ 3
                        extra = (e1, e2, e3)[:n_extra]
                        req = request_of(model_name, prompt, neg, cls, sampler, steps, cfg, seed)
                        job = lambda cb, tok: run(req, extra, cb, tok)  # noqa: E731
                        for ev in run_streaming(backend, session_of(request), job, prefix):
                            if ev[0] == "waiting":
                                yield gr.skip(), _status(f"waiting in the queue ({ev[1]} waiting)"), *[gr.skip()] * 4
                            elif ev[0] == "progress":
                                yield _progress_html(ev[1], ev[2], ev[4]), _status("running…"), *[gr.skip()] * 4
                            elif ev[0] == "done":
                                r = ev[1]
                                side = r.info.get("gif") or r.info.get("bicubic_path")
                                yield (_progress_html(1, 1, r.seconds),
                                       _status(f"done in {r.seconds:.1f} s ({r.info.get('nfe', '?')} network calls)"
                                               + (f"; class seen in the input: {r.info['class_used']}"
                                                  if r.info.get("class_used") else "")),
                                       [str(p) for p in r.paths], str(side) if side else gr.skip(),
                                       [str(p) for p in r.paths] + ([str(side)] if side else []),
                                       format_parameters(r.params[0]))
                            else:
                                yield gr.skip(), _status(ev[1], ok=False), *[gr.skip()] * 4

                    go.click(handler, [model, prompt, neg, cls, sampler, steps_c, cfg, seed, *ins],
                             [progress, status, out, extra_out, files, params], api_name=prefix,
                             show_progress="minimal", **heavy)
                    stop.click(cancel, None, status, queue=False)
                    if hook is not None:
                        hook(status)
                    for comp in ins:
                        if isinstance(comp, gr.File):
                            preview = ins_previews.get(id(comp))
                            if preview is not None:
                                comp.upload(on_upload, [comp, model], [preview, status], queue=False)

            ins_previews: dict[int, object] = {}

            def image_input(prefix: str, label: str = "Image"):
                f, shown = upload_block(prefix, label)
                ins_previews[id(f)] = shown
                return f

            def img2img_inputs():
                f = image_input("img2img")
                s = Slider(0, 1, value=0.6, step=0.05, label="Strength (0 = keep, 1 = new image)",
                              elem_id="img2img-strength")
                return [f, s]

            def img2img_run(req, extra, cb, tok):
                return backend.img2img(req, extra[0], extra[1], cb, tok)

            edit_tab("img2img", "img2img", img2img_inputs, img2img_run)

            def inpaint_inputs():
                f = gr.File(label=f"Image (≤ {lim.max_upload_mb:g} MB), then paint the part to fill",
                            file_count="single", type="filepath", elem_id="inpaint-upload", height=110)
                editor = gr.ImageEditor(label="Paint the mask (white brush = fill)", type="pil", image_mode="RGBA",
                                        sources=(), layers=False, transforms=(), format="png", height=360,
                                        brush=gr.Brush(default_size=24, colors=["#ffffff"], color_mode="fixed"),
                                        elem_id="inpaint-editor", elem_classes="td-pixel", canvas_size=(256, 256))
                r = Slider(1, 10, value=1, step=1, label="RePaint resampling (× cost)", elem_id="inpaint-resample")

                def load_into_editor(path, model_name):
                    img, msg = on_upload(path, model_name)
                    if img is None:
                        return gr.skip(), msg
                    return {"background": img, "layers": [], "composite": img}, msg

                inpaint_inputs.loader = (f, editor, load_into_editor)
                return [f, editor, r]

            def inpaint_run(req, extra, cb, tok):
                path, editor, r = extra
                if not editor or editor.get("background") is None:
                    raise ConfigError("inpaint: upload an image first")
                layers = editor.get("layers") or []
                mask = layers[0] if layers else None
                return backend.inpaint(req, path, mask, r, cb, tok)

            def inpaint_hook(status):
                f, editor, loader = inpaint_inputs.loader
                f.upload(loader, [f, model], [editor, status], queue=False)

            edit_tab("Inpaint", "inpaint", inpaint_inputs, inpaint_run, hook=inpaint_hook)

            def upscale_inputs():
                f = image_input("upscale", "Low-resolution image")
                k = Dropdown([2, 4], value=2, label="Factor (input is fit to model size / factor)",
                                elem_id="upscale-factor")
                return [f, k]

            edit_tab("Upscale", "upscale", upscale_inputs,
                     lambda req, extra, cb, tok: backend.upscale(req, extra[0], extra[1], cb, tok), negative=False,
                     sampler_name=UPSCALE_SAMPLER)

            def denoise_inputs():
                f = image_input("denoise", "Noisy image")
                s = Slider(0, 1, value=0, step=0.01, label="Noise σ in [-1, 1] units (0 = estimate)",
                              elem_id="denoise-sigma")
                m = Radio(["mean", "sample"], value="mean", label="Method (mean: 1 call; sample: sharp)",
                             elem_id="denoise-method")
                return [f, s, m]

            edit_tab("Denoise", "denoise", denoise_inputs,
                     lambda req, extra, cb, tok: backend.denoise(req, extra[0], extra[1], extra[2], cb, tok),
                     steps=20, negative=False, sampler_name="DDPM")

            def interpolate_inputs():
                gr.Markdown("Frames between the images of seed A (the Seed field) and seed B, along the "
                            "slerp between their noises; shown as a strip and an animated GIF.")
                b = Number(value=1, precision=0, label="Seed B", elem_id="interpolate-seed-b", minimum=0)
                n = Slider(2, lim.max_frames, value=8, step=1, label=f"Frames (≤ {lim.max_frames})",
                              elem_id="interpolate-frames")
                return [b, n]

            edit_tab("Interpolate", "interpolate", interpolate_inputs,
                     lambda req, extra, cb, tok: backend.interpolate(req, extra[0], extra[1], cb, tok),
                     negative=False)

            # ------------------------------------------------------------ PNG info
            with gr.Tab("PNG info", id="pnginfo", elem_id="tab-pnginfo"):
                gr.Markdown("Drop a PNG made here (or by AUTOMATIC1111) to read its parameters; "
                            "**Send to Generate** fills the Generate tab, **Reproduce** regenerates it.")
                p_file = gr.File(label="PNG", file_count="single", type="filepath", elem_id="pnginfo-upload",
                                 height=110)
                p_text = gr.Textbox(label="Parameters", lines=4, interactive=False, elem_id="pnginfo-params")
                with gr.Row():
                    p_send = gr.Button("Send to Generate", elem_id="pnginfo-send")
                    p_repro = gr.Button("Reproduce", variant="primary", elem_id="pnginfo-reproduce")
                p_status = gr.HTML("", elem_id="pnginfo-status")
                p_image = gr.Image(label="Reproduced", type="filepath", interactive=False, format="png",
                                   elem_id="pnginfo-image", elem_classes="td-pixel", height=256)

                def read_png(path):
                    if not path:
                        return "", ""
                    try:
                        return format_parameters(read_parameters(path)), _status("parameters read")
                    except BaseException as exc:
                        return "", _status(_message(exc, "read_parameters"), ok=False)

                p_file.upload(read_png, p_file, [p_text, p_status], queue=False, api_name="read_parameters")

                def send(path):
                    try:
                        req, pos = backend.request_from_params(read_parameters(path))
                        info = backend.model_info(req.model)
                    except BaseException as exc:
                        return [gr.skip()] * 10 + [_status(_message(exc, "send"), ok=False)]
                    classes = info["classes"] or []
                    return (gr.update(value=req.model), req.prompt, req.negative_prompt,
                            gr.update(choices=classes, value=req.class_label), req.sampler, req.steps,
                            req.guidance_scale, req.seed, req.batch_size, gr.Tabs(selected="generate"),
                            _status(f"sent; the image is number {pos + 1} of the batch"))

                p_send.click(send, p_file, [model, g_prompt, g_neg, g_cls, g_sampler, g_steps, g_cfg, g_seed,
                                            g_batch, tabs, p_status], queue=False)

                def reproduce(path, request: gr.Request):
                    import numpy as np
                    from PIL import Image

                    if not path:
                        yield _status("drop a PNG first", ok=False), gr.skip()
                        return
                    for ev in run_streaming(backend, session_of(request),
                                            lambda cb, tok: backend.reproduce(path, cb, tok), "reproduce"):
                        if ev[0] == "progress":
                            yield _status(f"regenerating: step {ev[1]}/{ev[2]}"), gr.skip()
                        elif ev[0] == "done":
                            img, p = ev[1]
                            try:
                                out = backend._save(img, p, "reproduced")
                                with Image.open(path) as orig:
                                    same = orig.size == img.size and np.array_equal(
                                        np.asarray(orig.convert(img.mode)), np.asarray(img))
                            except Exception as exc:  # noqa: BLE001 - disk full, the upload gone, …
                                yield _status(_message(exc, "reproduce"), ok=False), gr.skip()
                                return
                            yield _status("identical pixels to the dropped PNG" if same else
                                          "regenerated, but the pixels differ (other weights or version?)",
                                          ok=same), str(out)
                        elif ev[0] != "waiting":
                            yield _status(ev[1], ok=False), gr.skip()

                p_repro.click(reproduce, p_file, [p_status, p_image], api_name="reproduce", **heavy)

        # ------------------------------------------------------------ model changes
        def change_model(name):
            try:
                info = backend.model_info(name)
            except BaseException as exc:
                return [_status(_message(exc, "model"), ok=False), gr.skip()] + [gr.skip()] * (3 * len(all_cond))
            c, classes = cond_visibility(info)
            ups = []
            for _, _, _, negative in all_cond:
                ups += [gr.update(visible=c == "text"), gr.update(visible=c == "text" and negative),
                        gr.update(visible=c == "class", choices=classes, value=classes[0] if classes else None)]
            w, h = info["size"]
            return [model_md(info), f"{w}×{h} (fixed by the model)"] + ups

        flat = [c for prompt, neg, cls, _ in all_cond for c in (prompt, neg, cls)]
        model.change(change_model, model, [model_info, g_size] + flat, queue=False)
        def refresh_models():
            try:
                return gr.update(choices=lib.names())
            except Exception as exc:  # noqa: BLE001 - e.g. the models folder was removed
                gr.Warning(_message(exc, "refresh"))
                return gr.skip()

        refresh.click(refresh_models, None, model, queue=False)
    return demo


def launch(backend: Backend, host: str = "127.0.0.1", port: int = 7860, block: bool = True, quiet: bool = False):
    """Queue and serve the app; returns the Blocks (with ``block=False`` it serves in a thread)."""
    import gradio as gr

    demo = build_app(backend)
    lim = backend.limits
    demo.queue(max_size=lim.max_queue, default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=quiet, show_error=False,
                max_file_size=f"{int(lim.max_upload_mb)}mb", css=CSS, footer_links=["api"],
                allowed_paths=[str(backend.outputs.resolve())], theme=gr.themes.Soft(), ssr_mode=False)
    return demo

"""PSP-GAN demo (Gradio Space): restore the faces in a photo, guided by reference photos of the same person.

Runs unchanged on a ZeroGPU Space (`@spaces.GPU`), on a GPU box and on CPU. The model loads once at start from
`PSP_MODEL` (Hub id or folder) or the bundled `checkpoints/psp-gan-128`; without trained weights the page says
plainly that it runs an untrained model.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import logging  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import spaces  # noqa: E402
import torch  # noqa: E402

from psp_hub.imageio import ImageLoadError, load_image, save_image  # noqa: E402
from psp_hub.pipeline import (  # noqa: E402
    NoFaceError,
    PipelineConfig,
    PipelineError,
    ResizeUpscaler,
    RestorationPipeline,
)
from psp_hub.pipeline.background import output_size  # noqa: E402

log = logging.getLogger("psp_gan.app")
HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"


def _env_int(name: str, default: int) -> int:
    try:
        return int(float(os.environ.get(name, default)))
    except ValueError:
        return default


@dataclass(frozen=True)
class AppConfig:
    """Limits and serving settings of the Space (each overridable by an environment variable)."""

    max_pixels: int = _env_int("PSP_MAX_PIXELS", 25_000_000)  # photos above this are refused with a message
    max_output_pixels: int = _env_int("PSP_MAX_OUTPUT_PIXELS", 32_000_000)  # the upscale is lowered above this
    max_reference_uploads: int = _env_int("PSP_MAX_REFERENCE_UPLOADS", 8)  # more are cut to the first N (said so)
    max_file_size: str = os.environ.get("PSP_MAX_FILE_SIZE", "20mb")  # upload size limit
    concurrency: int = _env_int("PSP_CONCURRENCY", 2)  # requests run at once; the rest wait in the queue
    queue_size: int = _env_int("PSP_QUEUE_SIZE", 64)
    gpu_duration: int = _env_int("PSP_GPU_DURATION", 60)  # ZeroGPU seconds reserved per call
    preview_side: int = _env_int("PSP_PREVIEW_SIDE", 1600)  # the before/after slider shows at most this size
    cache_examples: bool = os.environ.get("PSP_CACHE_EXAMPLES", "1") not in ("0", "false", "False")


APP = AppConfig()
PIPE = RestorationPipeline.from_pretrained(
    device="cuda" if os.environ.get("SPACES_ZERO_GPU") else None, max_input_pixels=APP.max_pixels
)
INFO = PIPE.info
OUT_DIR = Path(tempfile.mkdtemp(prefix="psp-gan-app-"))

FACE_CHOICES = [("All faces", "all"), ("Largest face", "largest"), ("Face nearest the centre", "center")]


def _paths(files) -> list[str]:
    """File paths from a gr.File value (str, list of str, or file objects)."""
    if files is None:
        return []
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    return [str(getattr(f, "path", None) or getattr(f, "name", None) or f) for f in files]


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    """Downscale for display so the longer side is at most `side`."""
    h, w = image.shape[:2]
    s = side / max(h, w)
    return image if s >= 1 else cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _strip(faces: list[np.ndarray]) -> np.ndarray:
    """Faces side by side (only-faces output)."""
    return np.concatenate(faces, axis=1)


def _status_markdown(result, notes: list[str]) -> str:
    """A short human summary: faces, modes, timings, warnings."""
    r = result.report
    lines = []
    if not INFO.trained:
        lines.append(f"**⚠️ Untrained model.** {INFO.message}")
    lines.append(f"Restored **{r['faces_restored']}** of {r['faces_found']} face(s) found in "
                 f"{r['timings_s']['total']:.2f} s; output {r['output_size'] or 'faces only'}.")
    for f in r["faces"]:
        mode = (f"personalised with {len(f['references_used'])} reference(s): {', '.join(f['references_used'])}"
                if f["references_used"] else "blind (no references)")
        lines.append(f"- Face {f['index']}: {mode}")
    warnings = [w for w in notes + r["warnings"] if w != INFO.message]
    if warnings:
        lines.append("\n**Notes**")
        lines += [f"- {w}" for w in warnings]
    return "\n".join(lines)


@spaces.GPU(duration=APP.gpu_duration)
def _run_pipeline(photo: str, references: list[str], config: PipelineConfig):
    """The GPU part: references and photo through the pipeline (ZeroGPU attaches a GPU for this call only).

    Returns only picklable CPU data (ZeroGPU sends results back from a worker process): the result and the
    aligned references as (name, image) pairs.
    """
    refset = PIPE.prepare_references(references, names=[Path(p).name for p in references])
    result = PIPE.restore(photo, refset, config=config)
    return result, [(r.name, r.aligned) for r in refset.references if r.aligned is not None]


_LAST_ERRORS: dict[str, str] = {}  # session -> message of its last failed request (shown in the page)


def _fail(message: str, title: str, request: gr.Request | None) -> gr.Error:
    """A gr.Error for the toast / API caller; the message is also kept for the page's status box."""
    if request is not None and getattr(request, "session_hash", None):
        if len(_LAST_ERRORS) > 1000:
            _LAST_ERRORS.clear()
        _LAST_ERRORS[request.session_hash] = message
    return gr.Error(message, title=title)


def show_failure(request: gr.Request):
    """After a failed request: clear stale results and show the error message in the status box."""
    message = _LAST_ERRORS.pop(getattr(request, "session_hash", None) or "", "The request failed.")
    return None, None, [], [], f"**Cannot restore this photo.** {message}", None


def restore(photo, references, faces="all", upscale=2.0, strength=1.0, drop_mismatched=True,
            reference_faces="best", input_is_aligned=False, only_faces=False, request: gr.Request = None):
    """Restore the faces in `photo` with the reference photos; returns the page's outputs (API: /restore)."""
    started = time.perf_counter()
    try:
        photo_paths = _paths(photo)
        if not photo_paths:
            raise _fail("Please upload a photo to restore.", "No photo", request)
        refs = _paths(references)
        notes = []
        if len(refs) > APP.max_reference_uploads:
            notes.append(f"You gave {len(refs)} reference photos; only the first {APP.max_reference_uploads} were used.")
            refs = refs[: APP.max_reference_uploads]
        if not refs:
            notes.append("No reference photos: blind restoration (the model sees only the photo).")
        config = PipelineConfig(
            faces=faces or "all", upscale=float(upscale), strength=float(strength), input_is_aligned=bool(input_is_aligned),
            only_faces=bool(only_faces), mismatched_references="drop" if drop_mismatched else "keep",
            reference_faces=reference_faces or "best", max_output_pixels=APP.max_output_pixels,
        )
        result, aligned_refs = _run_pipeline(photo_paths[0], refs, config)
    except gr.Error:
        raise
    except (ImageLoadError, NoFaceError, PipelineError, ValueError) as exc:
        raise _fail(str(exc), "Cannot restore this photo", request) from None
    except torch.OutOfMemoryError:
        raise _fail("The server ran out of memory on this photo; try a smaller photo or a lower upscale.",
                    "Out of memory", request) from None
    except Exception:  # noqa: BLE001 - never show a traceback in the page
        log.exception("restore failed")
        raise _fail("Something went wrong while restoring this photo; the details are in the server log.",
                    "Unexpected error", request) from None

    for w in notes + result.warnings:
        if w != INFO.message:
            gr.Warning(w)
    source = load_image(photo_paths[0], max_pixels=APP.max_pixels)
    stem = Path(photo_paths[0]).stem[:40] or "photo"
    out_dir = Path(tempfile.mkdtemp(dir=OUT_DIR))
    if result.image is not None:
        before = ResizeUpscaler(config.background)(source, output_size(source.shape, result.report["upscale"]))
        after = result.image
    else:
        before = _strip([f.aligned_input for f in result.faces])
        after = _strip([f.restored for f in result.faces])
    download = save_image(after, out_dir / f"{stem}_restored.png")
    slider = (_fit(before, APP.preview_side), _fit(after, APP.preview_side))
    faces_gallery = [
        (np.concatenate([f.aligned_input, f.restored], axis=1),
         f"face {f.index}: input | restored ({'personalised, ' + str(len(f.references_used)) + ' refs' if f.references_used else 'blind'})")
        for f in result.faces
    ]
    used = {name for f in result.faces for name in f.references_used}
    refs_gallery = [(image, f"{name}: {'used' if name in used else 'not used'}") for name, image in aligned_refs]
    report = dict(result.report, app_seconds=round(time.perf_counter() - started, 3), app_notes=notes)
    return slider, str(download), faces_gallery, refs_gallery, _status_markdown(result, notes), report


def preview_photo(photo):
    """Show the uploaded photo (or why it cannot be used) as soon as it is uploaded."""
    paths = _paths(photo)
    if not paths:
        return gr.update(value=None, visible=False), ""
    try:
        image = load_image(paths[0], max_pixels=APP.max_pixels)
    except ImageLoadError as exc:
        return gr.update(value=None, visible=False), f"**Cannot use this photo:** {exc}"
    h, w = image.shape[:2]
    return gr.update(value=_fit(image, 800), visible=True), f"{w} x {h} pixels"


def restore_example(photo, references, request: gr.Request = None):
    """Cached examples: default options."""
    return restore(photo, references, request=request)


def _model_banner() -> str:
    if INFO.trained:
        return (f"<div class='psp-ok'>Model: {INFO.message} · {INFO.out_size} px faces · up to "
                f"{INFO.max_references} references · {INFO.device}</div>")
    return (f"<div class='psp-warn' id='untrained-warning'><b>⚠️ Untrained model.</b> {INFO.message} "
            f"({INFO.out_size} px, {INFO.device})</div>")


# System fonts only: the page loads nothing from outside the server.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])

CSS = """
.psp-warn {background:#fff3cd;border:2px solid #d39e00;color:#5c4400;padding:10px 14px;border-radius:8px;font-size:15px}
.psp-ok {background:#e8f5e9;border:1px solid #66bb6a;color:#1b5e20;padding:8px 12px;border-radius:8px}
#psp-title {text-align:center;margin-bottom:0}
"""

DESCRIPTION = """
Upload a **photo** with one or more faces and a few **reference photos of the same person** (ordinary photos are
fine: the largest face in each is found and aligned). Every face is detected, aligned to the FFHQ template,
restored by **PSP-GAN** (Lu & Qi, *Personalized Super Resolution with Face Prior*),
and pasted back with a feathered mask; the rest of the photo is upscaled by plain resampling.
References that look like someone else are dropped (you can keep them); without references the restoration is blind.
"""


def _examples() -> list[list]:
    """Example rows from the repository's `examples/` folder (only those present)."""
    rows = []
    r7222 = sorted(str(p) for p in (EXAMPLES / "references" / "celeba_7222").glob("*.jpg"))
    r7256 = sorted(str(p) for p in (EXAMPLES / "references" / "celeba_7256").glob("*.jpg"))
    for photo, refs in [("celeba_7222_lq.jpg", r7222[:3]), ("celeba_7256_lq.jpg", r7256), ("family_lq.jpg", r7222[:3])]:
        path = EXAMPLES / "photos" / photo
        if path.is_file() and refs:
            rows.append([str(path), refs])
    return rows


def build_demo() -> gr.Blocks:
    """The page: inputs and options on the left, before/after, faces, references and report on the right."""
    with gr.Blocks(title="PSP-GAN: personalised face restoration", analytics_enabled=False) as demo:
        gr.Markdown("# PSP-GAN — personalised face restoration", elem_id="psp-title")
        gr.HTML(_model_banner())
        gr.Markdown(DESCRIPTION)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                photo = gr.File(label="Photo to restore", file_count="single", type="filepath", elem_id="photo-input")
                preview = gr.Image(label="Photo", type="numpy", interactive=False, visible=False, height=240,
                                   elem_id="photo-preview")
                photo_info = gr.Markdown(elem_id="photo-info")
                references = gr.File(label=f"Reference photos of the same person (up to {APP.max_reference_uploads})",
                                     file_count="multiple", type="filepath", elem_id="reference-input")
                with gr.Accordion("Options", open=False):
                    faces = gr.Radio(FACE_CHOICES, value="all", label="Faces to restore")
                    upscale = gr.Slider(1, 4, value=2, step=0.5, label="Upscale factor (whole photo)")
                    strength = gr.Slider(0, 1.5, value=1.0, step=0.05, label="Reference strength (0 = blind)")
                    drop = gr.Checkbox(value=True, label="Drop references that look like someone else")
                    ref_faces = gr.Radio([("Best-matching face only", "best"), ("Every face", "all")], value="best",
                                         label="In group photos, use the references for")
                    aligned = gr.Checkbox(value=False, label="The photo is already an aligned face crop")
                    only_faces = gr.Checkbox(value=False, label="Output the restored faces only")
                run = gr.Button("Restore", variant="primary", elem_id="restore-button")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(label="Before / after", type="numpy", elem_id="result-slider",
                                        buttons=["fullscreen"], max_height=640)
                download = gr.File(label="Restored photo (PNG, full size)", elem_id="result-download")
                status = gr.Markdown(elem_id="result-status")
                with gr.Row():
                    faces_out = gr.Gallery(label="Restored faces (aligned input | restored)", columns=2, height=260,
                                           elem_id="result-faces")
                    refs_out = gr.Gallery(label="References as the model sees them", columns=4, height=260,
                                          elem_id="result-references")
                with gr.Accordion("Report", open=False):
                    report = gr.JSON(label="Report", elem_id="result-report")
        outputs = [slider, download, faces_out, refs_out, status, report]
        photo.change(preview_photo, photo, [preview, photo_info], api_name=False, show_progress="hidden")
        event = run.click(restore, [photo, references, faces, upscale, strength, drop, ref_faces, aligned, only_faces],
                          outputs, api_name="restore", concurrency_limit=APP.concurrency)
        event.failure(show_failure, None, outputs, api_name=False, show_progress="hidden")
        rows = _examples()
        if rows:
            gr.Examples(rows, [photo, references], outputs, fn=restore_example, cache_examples=APP.cache_examples,
                        label="Examples (degraded photos with references of the same person)", api_name=False,
                        preload=False)
        gr.Markdown(
            "Photos are processed in memory and not stored beyond the session's temporary files. "
            f"Limits: {APP.max_pixels / 1e6:g} megapixels per photo, {APP.max_file_size} per upload, "
            f"{APP.max_reference_uploads} references. Usage analytics are off."
        )
    return demo


demo = build_demo()
demo.queue(default_concurrency_limit=APP.concurrency, max_size=APP.queue_size)

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    demo.launch(max_file_size=APP.max_file_size, theme=THEME, css=CSS, show_error=False,
                footer_links=["api", "gradio"])

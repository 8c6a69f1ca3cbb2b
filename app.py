"""PSP-GAN demo (Gradio Space): restore the faces in a photo or a short video, guided by reference photos of the
same person or by a person profile built from them once (downloadable, and uploadable instead of the photos).

Runs unchanged on a ZeroGPU Space (`@spaces.GPU`), on a GPU box and on CPU. The model loads once at start from
`PSP_MODEL` (Hub id or folder) or the bundled `checkpoints/psp-gan-256`; without trained weights the page says
plainly that it runs an untrained model.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import ctypes
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import spaces
import torch
from gradio.data_classes import ListFiles
from gradio.route_utils import delete_files_created_by_app
from gradio.utils import get_upload_folder
from safetensors import SafetensorError

from psp_hub.common.imageio import ImageLoadError, load_image, save_image
from psp_hub.pipeline import NoFaceError, PipelineConfig, PipelineError, RestorationPipeline
from psp_hub.profiles import PersonProfile
from psp_hub.video import VideoConfig, estimate_seconds, probe, restore_video

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
    max_reference_uploads: int = _env_int("PSP_MAX_REFERENCE_UPLOADS", 0)  # 0: the model's K; more are cut (said so)
    max_file_size: str = os.environ.get("PSP_MAX_FILE_SIZE", "20mb")  # upload size limit
    concurrency: int = _env_int("PSP_CONCURRENCY", 2)  # requests run at once; the rest wait in the queue
    queue_size: int = _env_int("PSP_QUEUE_SIZE", 64)
    gpu_duration: int = _env_int("PSP_GPU_DURATION", 60)  # ZeroGPU seconds reserved per call
    preview_side: int = _env_int("PSP_PREVIEW_SIDE", 1600)  # the before/after slider shows at most this size
    delete_after_s: int = _env_int("PSP_DELETE_AFTER", 3600)  # uploads and results are deleted after this age (keep
    # it above the longest queue wait: an upload still waiting in the queue is not exempt)
    cache_examples: bool = os.environ.get("PSP_CACHE_EXAMPLES", "1") not in ("0", "false", "False")
    max_video_frames: int = _env_int("PSP_MAX_VIDEO_FRAMES", 300)  # longer clips are refused (10 s at 30 frames/s)
    video_gpu_duration: int = _env_int("PSP_VIDEO_GPU_DURATION", 120)  # ZeroGPU seconds reserved per video

    @property
    def delete_every_s(self) -> int:
        """How often Gradio's cache sweep runs: a sixth of the age, so a file lives at most 7/6 of it."""
        return max(5, self.delete_after_s // 6)


APP = AppConfig()
PIPE = RestorationPipeline.from_pretrained(
    device="cuda" if os.environ.get("SPACES_ZERO_GPU") else None, max_input_pixels=APP.max_pixels
)
INFO = PIPE.info
REFERENCE_LIMIT = APP.max_reference_uploads or INFO.max_references  # the one limit the page states
# Results are written inside Gradio's own cache folder: Gradio serves them in place (no second copy, so no
# half-written shared copy for identical requests) and its `delete_cache` sweep removes them with the uploads.
OUT_ROOT = Path(get_upload_folder()) / "psp-gan-results"

FACE_CHOICES = [("All faces", "all"), ("Largest face", "largest"), ("Face nearest the centre", "center")]
LARGE_FACE_CHOICES = [
    ("Restore them (their fine detail stays the photo's own)", "restore"),
    ("Leave them untouched", "keep"),
]
DEFAULTS = PipelineConfig()  # the pipeline's own defaults (one source of truth for the page and the API)
ON_GPU = INFO.device.startswith("cuda") or bool(os.environ.get("SPACES_ZERO_GPU"))
VIDEO_TYPES = [".mp4", ".mov", ".mkv", ".webm", ".avi"]  # as psp-restore (psp_hub.cli.VIDEO_SUFFIXES)


class UserInputError(Exception):
    """A request the app refuses with a message for the user (logged as one line, no traceback)."""

    def __init__(self, message: str, title: str = "Cannot restore this photo") -> None:
        super().__init__(message)
        self.title = title


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to tune
        return None


LIBC = _libc()
if LIBC is not None:
    # Two malloc arenas instead of one per request thread: each arena keeps the pages of the photos it once held.
    LIBC.mallopt(-8, 2)  # M_ARENA_MAX


def _release_memory() -> None:
    """Hand freed heap pages back to the OS after a request (glibc keeps them otherwise; see docs/app.md)."""
    if LIBC is not None:
        LIBC.malloc_trim(0)


def _sweep_cache_forever(blocks: gr.Blocks) -> None:
    """Delete uploads and results older than PSP_DELETE_AFTER, with Gradio's own sweep, for the server's lifetime.

    Gradio's scheduled sweep iterates the live sets of cached files that request threads add to, so one upload
    arriving mid-sweep ends it for good (RuntimeError: set changed size; in the load test it kept all 1,106 files).
    This thread runs the same sweep and simply tries again.
    """
    while True:
        time.sleep(APP.delete_every_s)
        for _ in range(5):
            try:
                delete_files_created_by_app(blocks, APP.delete_after_s)
                break
            except RuntimeError:
                time.sleep(0.1)
        _remove_leftovers(time.time())


def _remove_leftovers(now: float) -> None:
    """Request folders emptied by the sweep, and the empty `tmp*` files Gradio's upload parser leaves (one or two per
    upload) once they are as old as the uploads. A folder must have been empty for a sweep period: a new one is
    empty only for the moment between its creation and its first file."""
    for folder in OUT_ROOT.glob("*"):
        try:
            if folder.stat().st_mtime < now - APP.delete_every_s and not any(folder.iterdir()):
                folder.rmdir()
        except OSError:
            pass
    for stub in OUT_ROOT.parent.glob("tmp*"):
        try:
            st = stub.stat()
            if stub.is_file() and st.st_size == 0 and st.st_mtime < now - APP.delete_after_s:
                stub.unlink()
        except OSError:
            pass


def _paths(files) -> list[str]:
    """File paths from a gr.File value: a path, a file object or FileData dict, or a list of those."""
    if files is None:
        return []
    if isinstance(files, (str, os.PathLike, dict)) or hasattr(files, "path"):
        files = [files]
    out = []
    for f in files:
        path = f.get("path") if isinstance(f, dict) else getattr(f, "path", None) or getattr(f, "name", None) or f
        if path:
            out.append(str(path))
    return out


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    """Downscale for display so the longer side is at most `side`."""
    h, w = image.shape[:2]
    s = side / max(h, w)
    return image if s >= 1 else cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _status_markdown(result, notes: list[str]) -> str:
    """A short human summary: faces, modes, timings, warnings."""
    r = result.report
    lines = []
    if not INFO.trained:
        lines.append(f"**⚠️ Untrained model.** {INFO.message}")
    lines.append(
        f"Restored **{r['faces_restored']}** of {r['faces_found']} face(s) found in "
        f"{r['timings_s']['total']:.2f} s; output {r['output_size'] or 'faces only'}."
    )
    for f in r["faces"]:
        shares = f.get("reference_shares") or {}
        names = [f"{n} ({shares[n]:.0%})" if n in shares else n for n in f["references_used"]]
        mode = f"personalised with {len(names)} reference(s): {', '.join(names)}" if names else "blind (no references)"
        lines.append(f"- Face {f['index']}: {mode}")
    warnings = [w for w in notes + r["warnings"] if w != INFO.message]
    if warnings:
        lines.append("\n**Notes**")
        lines += [f"- {w}" for w in warnings]
    return "\n".join(lines)


def _reference_set(references: list[str], profile: PersonProfile | None):
    """The request's references: the profile's (encoded once, re-encoded if built by another model), else the photos."""
    if profile is not None:
        return profile.reference_set(PIPE)
    return PIPE.prepare_references(references, names=[Path(p).name for p in references])


def _load_profile(files) -> PersonProfile | None:
    """The uploaded person profile (read on the CPU, before any GPU is attached), or None."""
    paths = _paths(files)
    if not paths:
        return None
    try:
        return PersonProfile.load(paths[0])
    except (SafetensorError, ValueError, OSError) as exc:  # not safetensors at all, or not a profile
        raise UserInputError(f"{Path(paths[0]).name} is not a PSP-GAN person profile ({exc}).", "Bad profile") from None


@spaces.GPU(duration=APP.gpu_duration)
def _run_pipeline(photo: str, references: list[str], config: PipelineConfig, profile: PersonProfile | None = None):
    """The GPU part: references (or a profile) and photo through the pipeline (ZeroGPU attaches a GPU for this call).

    Returns only picklable CPU data (ZeroGPU sends results back from a worker process): the result and the
    aligned references as (name, image) pairs.
    """
    refset = _reference_set(references, profile)
    result = PIPE.restore(photo, refset, config=config)
    return result, [(r.name, r.aligned) for r in refset.references if r.aligned is not None]


_LAST_ERRORS: dict[str, str] = {}  # session -> message of its last failed request (shown in the page)


def _fail(message: str, title: str, request: gr.Request | None) -> gr.Error:
    """A gr.Error for the toast / API caller (Gradio prints no traceback); the page's status box shows it too."""
    if request is not None and getattr(request, "session_hash", None):
        if len(_LAST_ERRORS) > 1000:
            _LAST_ERRORS.clear()
        _LAST_ERRORS[request.session_hash] = message
    return gr.Error(message, title=title, print_exception=False)


def show_failure(request: gr.Request):
    """After a failed request: clear stale results and show the error message in the status box."""
    message = _LAST_ERRORS.pop(getattr(request, "session_hash", None) or "", "The request failed.")
    return None, None, [], None, [], f"**Cannot restore this photo.** {message}", None


def _pipeline_config(
    faces,
    upscale,
    strength,
    drop_mismatched,
    reference_faces,
    input_is_aligned,
    only_faces,
    fidelity,
    large_faces,
    identity_margin,
) -> PipelineConfig:
    """The page's options as a validated PipelineConfig (ValueError names a bad option)."""
    return DEFAULTS.replace(
        faces=faces or "all",
        upscale=float(upscale),
        strength=float(strength),
        input_is_aligned=bool(input_is_aligned),
        only_faces=bool(only_faces),
        mismatched_references="drop" if drop_mismatched else "keep",
        reference_faces=reference_faces or "best",
        max_output_pixels=APP.max_output_pixels,
        fidelity=float(DEFAULTS.fidelity if fidelity is None else fidelity),
        large_faces=large_faces or DEFAULTS.large_faces,
        identity_margin=float(DEFAULTS.identity_margin if identity_margin is None else identity_margin),
    )


def _request_files(photo, references, profile: PersonProfile | None = None) -> tuple[str, list[str], list[str]]:
    """The photo path, the reference paths (cut to the limit) and the notes about them."""
    photo_paths = _paths(photo)
    if not photo_paths:
        raise UserInputError("Please upload a photo to restore.", "No photo")
    return photo_paths[0], *_reference_files(references, profile)


def _reference_files(references, profile: PersonProfile | None) -> tuple[list[str], list[str]]:
    """The reference paths (cut to the limit, none with a profile) and the notes about them."""
    refs, notes = _paths(references), []
    if profile is not None:
        names = ", ".join(profile.sources)
        notes.append(f"Person profile '{profile.name}': {len(profile.sources)} reference(s) ({names}).")
        if refs:
            notes.append("A person profile was given: the reference photos were not used.")
        return [], notes
    if len(refs) > REFERENCE_LIMIT:
        notes.append(f"You gave {len(refs)} reference photos; only the first {REFERENCE_LIMIT} were used.")
        refs = refs[:REFERENCE_LIMIT]
    if not refs:
        notes.append("No reference photos: blind restoration (the model sees only the photo).")
    return refs, notes


def _faces_caption(face) -> str:
    mode = f"personalised, {len(face.references_used)} refs" if face.references_used else "blind"
    return f"face {face.index}: input | restored ({mode})"


def _reference_caption(name: str, faces) -> str:
    """Under each reference: used or not, and its share of each face's fusion where the model reports one."""
    shares = [
        (f.index, f.reference_shares[f.references_used.index(name)])
        for f in faces
        if name in f.references_used and f.reference_shares is not None
    ]
    if not any(name in f.references_used for f in faces):
        return f"{name}: not used"
    if not shares:
        return f"{name}: used"
    if len(faces) == 1:
        return f"{name}: used, {shares[0][1]:.0%} of the references' weight"
    return f"{name}: used, " + ", ".join(f"{v:.0%} for face {i}" for i, v in shares)


def _write_outputs(result, photo: str, source: np.ndarray, aligned_refs) -> tuple:
    """Every file the page shows, written once into this request's own folder (full-size PNGs, JPEG previews)."""
    out = OUT_ROOT / uuid.uuid4().hex
    stem = Path(photo).stem[:40] or "photo"
    faces_png = [save_image(f.restored, out / f"{stem}_face_{f.index:02d}.png") for f in result.faces]
    if result.image is not None:
        after = result.image
        preview_after = _fit(after, APP.preview_side)
        interp = cv2.INTER_AREA if source.shape[1] > preview_after.shape[1] else cv2.INTER_LANCZOS4
        preview_before = cv2.resize(source, preview_after.shape[1::-1], interpolation=interp)
    else:
        after = np.concatenate([f.restored for f in result.faces], axis=1)
        preview_after = after
        preview_before = np.concatenate([f.aligned_input for f in result.faces], axis=1)
    download = save_image(after, out / f"{stem}_restored.png")
    slider = (
        str(save_image(preview_before, out / "before.jpg", quality=90)),
        str(save_image(preview_after, out / "after.jpg", quality=90)),
    )
    faces_gallery = [
        (
            str(save_image(np.concatenate([f.aligned_input, f.restored], axis=1), out / f"pair_{f.index:02d}.png")),
            _faces_caption(f),
        )
        for f in result.faces
    ]
    refs_gallery = [
        (str(save_image(image, out / f"ref_{i:02d}.png")), _reference_caption(name, result.faces))
        for i, (name, image) in enumerate(aligned_refs)
    ]
    return slider, str(download), faces_gallery, [str(p) for p in faces_png], refs_gallery


def _restore(photo, references, options: tuple, request: gr.Request | None, profile=None) -> tuple[tuple, list[str]]:
    """Run one request; returns the page's outputs and the warnings to show. Errors become gr.Error."""
    started = time.perf_counter()
    try:
        loaded = _load_profile(profile)
        photo_path, refs, notes = _request_files(photo, references, loaded)
        source = load_image(photo_path, max_pixels=APP.max_pixels)  # read now: the upload may be swept later
        result, aligned_refs = _run_pipeline(photo_path, refs, _pipeline_config(*options), loaded)
        files = _write_outputs(result, photo_path, source, aligned_refs)
        report = dict(result.report, app_seconds=round(time.perf_counter() - started, 3), app_notes=notes)
        outputs = (*files, _status_markdown(result, notes), report)
        return outputs, [w for w in notes + result.warnings if w != INFO.message]
    except UserInputError as exc:
        log.warning("refused: %s", exc)
        raise _fail(str(exc), exc.title, request) from None
    except (ImageLoadError, NoFaceError, PipelineError, ValueError) as exc:
        log.warning("refused: %s: %s", type(exc).__name__, exc)  # the user's input, not a fault: one line
        raise _fail(str(exc), "Cannot restore this photo", request) from None
    except torch.OutOfMemoryError:
        log.warning("refused: out of memory")
        raise _fail(
            "The server ran out of memory on this photo; try a smaller photo or a lower upscale.",
            "Out of memory",
            request,
        ) from None
    except Exception:
        log.exception("restore failed")
        raise _fail(
            "Something went wrong while restoring this photo; the details are in the server log.",
            "Unexpected error",
            request,
        ) from None
    finally:
        result = aligned_refs = source = (
            None  # the full-size arrays are on disk now: free them before trimming the heap
        )
        _release_memory()


def restore(
    photo,
    references=None,
    faces="all",
    upscale=2.0,
    strength=1.0,
    drop_mismatched=True,
    reference_faces="best",
    input_is_aligned=False,
    only_faces=False,
    fidelity=DEFAULTS.fidelity,
    large_faces=DEFAULTS.large_faces,
    identity_margin=DEFAULTS.identity_margin,
    profile=None,
    request: gr.Request = None,
):
    """Restore the faces in `photo` with the reference photos (optional; one file or a list) or a person profile
    (a .psp file from /build_profile or `psp-restore --save-profile`, used instead of the photos); API: /restore.

    Returns the before/after previews, the restored photo (PNG), the faces gallery, the restored faces (PNG, full
    size), the references as the model sees them, the status text and the JSON report.
    """
    options = (
        faces,
        upscale,
        strength,
        drop_mismatched,
        reference_faces,
        input_is_aligned,
        only_faces,
        fidelity,
        large_faces,
        identity_margin,
    )
    outputs, warnings = _restore(photo, references, options, request, profile)
    for w in warnings:
        gr.Warning(w)
    return outputs


def _guarded(work, title: str, request: gr.Request | None):
    """Run `work()`; expected user errors become a one-line log and a gr.Error, anything else a logged traceback."""
    try:
        return work()
    except UserInputError as exc:
        log.warning("refused: %s", exc)
        raise _fail(str(exc), exc.title, request) from None
    except (ImageLoadError, NoFaceError, PipelineError, ValueError) as exc:
        log.warning("refused: %s: %s", type(exc).__name__, exc)
        raise _fail(str(exc), title, request) from None
    except torch.OutOfMemoryError:
        log.warning("refused: out of memory")
        raise _fail("The server ran out of memory; try a shorter or smaller input.", "Out of memory", request) from None
    except Exception:
        log.exception("%s failed", title)
        raise _fail("Something went wrong; the details are in the server log.", "Unexpected error", request) from None
    finally:
        _release_memory()


@spaces.GPU(duration=APP.gpu_duration)
def _build_profile(references: list[str]) -> PersonProfile:
    """The GPU part of a profile: prepare and encode the references once (returned on the CPU, picklable)."""
    profile = PersonProfile.build(PIPE, references, name="profile", names=[Path(p).name for p in references])
    profile.cache = profile.cache.to("cpu")
    return profile


def build_profile(references=None, request: gr.Request = None):
    """A person profile (.psp) from the reference photos, to upload later instead of them; API: /build_profile.

    Returns the profile file and a summary of the references it kept and dropped.
    """

    def work():
        refs, notes = _reference_files(references, None)
        if not refs:
            raise UserInputError("Please upload reference photos of the person to build a profile.", "No references")
        profile = _build_profile(refs)
        path = profile.save(OUT_ROOT / uuid.uuid4().hex / "profile.psp")
        lines = [f"Profile with **{len(profile.sources)}** reference(s): {', '.join(profile.sources)}."]
        lines += [f"- left out {d['reference']}: {d['reason']}" for d in profile.dropped]
        lines += [f"- {n}" for n in notes if not n.startswith("No reference")]
        return str(path), "\n".join(lines)

    return _guarded(work, "Cannot build a profile", request)


def _video_path(video) -> str:
    """The uploaded video's path, checked against the length cap (the message says the limit in seconds too)."""
    paths = _paths(video)
    if not paths:
        raise UserInputError("Please upload a video to restore.", "No video")
    if Path(paths[0]).suffix.lower() not in VIDEO_TYPES:
        raise UserInputError(f"Videos must be one of {', '.join(VIDEO_TYPES)}.", "Not a video")
    info = probe(paths[0])
    if info.frames > APP.max_video_frames:
        raise UserInputError(
            f"This clip has {info.frames} frames ({info.duration_s:.1f} s); this Space restores at most "
            f"{APP.max_video_frames} frames ({APP.max_video_frames / info.fps:.1f} s at {info.fps:g} frames/s). "
            "Trim it first, or run `psp-restore video.mp4 --out restored.mp4` on your own machine.",
            "Video too long",
        )
    return paths[0]


def check_video(video, request: gr.Request = None) -> str:
    """What the uploaded clip is, whether it fits the cap, and on CPU about how long it would take; API: /check_video."""

    def work():
        path = _video_path(video)
        info = probe(path)
        text = (
            f"{info.frames} frames, {info.duration_s:.1f} s at {info.fps:g} frames/s, {info.width} x {info.height}, "
            f"{'with' if info.has_audio else 'no'} audio."
        )
        if not ON_GPU:
            seconds = estimate_seconds(PIPE, path)
            text += f" **No GPU here: this would take about {seconds / 60:.1f} min ({seconds:.0f} s) on this CPU.**"
        return text

    return _guarded(work, "Cannot use this video", request)


@spaces.GPU(duration=APP.video_gpu_duration)
def _run_video(src: str, dst: Path, references: list[str], profile: PersonProfile | None):
    """The GPU part of a video: references once, then every frame's tracked faces (returns the report)."""
    refset = _reference_set(references, profile) if references or profile is not None else None
    return restore_video(PIPE, src, dst, refset, VideoConfig(max_frames=APP.max_video_frames, progress=False))


def restore_clip(video, references=None, profile=None, request: gr.Request = None):
    """Restore the faces of a short video with reference photos or a person profile; API: /restore_video.

    Returns the restored video (MP4, the audio copied), the status text and the report.
    """

    def work():
        path = _video_path(video)
        loaded = _load_profile(profile)
        refs, notes = _reference_files(references, loaded)
        out = OUT_ROOT / uuid.uuid4().hex / f"{Path(path).stem[:40] or 'video'}_restored.mp4"
        out.parent.mkdir(parents=True, exist_ok=True)
        report = _run_video(path, out, refs, loaded)
        summary = (
            f"Restored **{report.faces_restored}** face(s) in {report.frames} frames ({report.tracks} track(s), "
            f"{report.personalized_tracks} with the references) at {report.frames_per_second:.2f} frames/s; "
            f"audio {'copied' if report.audio_copied else 'none'}."
        )
        notes = notes + report.warnings
        details = dict(vars(report), frames_per_second=round(report.frames_per_second, 3), notes=notes)
        return str(out), "\n".join([summary] + [f"- {n}" for n in notes]), details

    return _guarded(work, "Cannot restore this video", request)


def restore_example(photo, references, photo_thumbnail=None, reference_thumbnails=None, request: gr.Request = None):
    """Cached examples: default options; the notes stay in the status box (no toast at start-up)."""
    options = ("all", 2.0, 1.0, True, "best", False, False, None, None, None)
    return _restore(photo, references, options, request)[0]


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


class OneOrManyFiles(ListFiles):
    """Reference photos: a list of files, or a single file (`handle_file(...)` without a list)."""

    @classmethod
    def model_validate(cls, obj, *args, **kwargs):
        return super().model_validate([obj] if isinstance(obj, dict) else obj, *args, **kwargs)


def _reference_text() -> str:
    """The reference limit, worded the same everywhere on the page."""
    return f"up to {REFERENCE_LIMIT} reference photos"


def _model_banner() -> str:
    if INFO.trained:
        used = "" if REFERENCE_LIMIT == INFO.max_references else f" (the best {INFO.max_references} per face)"
        return (
            f"<div class='psp-ok'>Model: {INFO.message} · {INFO.out_size} px faces · {_reference_text()}{used} · "
            f"{INFO.device}</div>"
        )
    return (
        f"<div class='psp-warn' id='untrained-warning'><b>⚠️ Untrained model.</b> {INFO.message} "
        f"({INFO.out_size} px, {INFO.device})</div>"
    )


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
    """Example rows (photo, references) from `examples/`; the first shows one person in photo and references."""
    rows = []
    for photo, person, n in [
        ("celeba_7399_lq.jpg", "celeba_7399", 4),
        ("celeba_7222_lq.jpg", "celeba_7222", 3),
        ("celeba_7256_lq.jpg", "celeba_7256", 4),
        ("family_lq.jpg", "celeba_7222", 3),
    ]:
        path = EXAMPLES / "photos" / photo
        refs = sorted(str(p) for p in (EXAMPLES / "references" / person).glob("*.jpg"))[:n]
        if path.is_file() and refs:
            rows.append([str(path), refs, str(path), refs])
    return rows


def _input_column() -> dict:
    """Photo, references and options; returns the components by name."""
    c = {"photo": gr.File(label="Photo to restore", file_count="single", type="filepath", elem_id="photo-input")}
    c["preview"] = gr.Image(
        label="Photo", type="numpy", interactive=False, visible=False, height=240, elem_id="photo-preview"
    )
    c["photo_info"] = gr.Markdown(elem_id="photo-info")
    c["references"] = gr.File(
        label=f"Reference photos of the same person ({_reference_text()})",
        file_count="multiple",
        type="filepath",
        elem_id="reference-input",
    )
    c["references"].data_model = OneOrManyFiles
    c["profile"] = gr.File(
        label="Person profile (.psp), instead of reference photos",
        file_count="single",
        type="filepath",
        elem_id="profile-input",
    )
    with gr.Accordion("Options", open=False):
        c["faces"] = gr.Radio(FACE_CHOICES, value="all", label="Faces to restore")
        c["upscale"] = gr.Slider(1, 4, value=2, step=0.5, label="Upscale factor (whole photo)")
        c["strength"] = gr.Slider(0, 1.5, value=1.0, step=0.05, label="Reference strength (0 = blind)")
        c["fidelity"] = gr.Slider(
            0,
            1,
            value=DEFAULTS.fidelity,
            step=0.05,
            label="Fidelity (0 = the model's restoration, 1 = keep the photo's own face)",
        )
        c["large_faces"] = gr.Radio(
            LARGE_FACE_CHOICES, value=DEFAULTS.large_faces, label="Faces far larger than the model's size"
        )
        c["drop"] = gr.Checkbox(value=True, label="Drop references that look like someone else")
        c["reference_faces"] = gr.Radio(
            [("Best-matching face only", "best"), ("Every face", "all")],
            value="best",
            label="In group photos, use the references for",
        )
        c["identity_margin"] = gr.Slider(
            0,
            0.5,
            value=DEFAULTS.identity_margin,
            step=0.01,
            label="Group photos: how much better the best face must match than the next",
        )
        c["aligned"] = gr.Checkbox(value=False, label="The photo is already an aligned face crop")
        c["only_faces"] = gr.Checkbox(value=False, label="Output the restored faces only")
    c["run"] = gr.Button("Restore", variant="primary", elem_id="restore-button")
    return c


def _output_column() -> list:
    """The results, in the order of the /restore endpoint's outputs (each named: the API lists them by label)."""
    slider = gr.ImageSlider(
        label="Before and after", type="filepath", elem_id="result-slider", buttons=["fullscreen"], max_height=640
    )
    download = gr.File(label="Restored photo (PNG, full size)", elem_id="result-download")
    status = gr.Markdown(label="Status", elem_id="result-status")
    with gr.Row():
        faces_out = gr.Gallery(
            label="Restored faces (aligned input | restored)", columns=2, height=260, elem_id="result-faces"
        )
        refs_out = gr.Gallery(
            label="References as the model sees them", columns=4, height=260, elem_id="result-references"
        )
    faces_png = gr.File(label="Restored faces (PNG, full size)", file_count="multiple", elem_id="result-face-files")
    with gr.Accordion("Report", open=False):
        report = gr.JSON(label="Report", elem_id="result-report")
    return [slider, download, faces_out, faces_png, refs_out, status, report]


def _add_examples(c: dict, outputs: list) -> None:
    """Examples shown as thumbnails (hidden image columns); choosing one fills the photo and reference inputs."""
    rows = _examples()
    if not rows:
        return
    thumb = gr.Image(label="Photo", type="filepath", visible=False)
    thumbs = gr.Gallery(label="References", type="filepath", visible=False)
    gr.Examples(
        rows,
        [c["photo"], c["references"], thumb, thumbs],
        outputs,
        fn=restore_example,
        cache_examples=APP.cache_examples,
        visible_columns=[2, 3],
        api_visibility="private",
        label="Examples (degraded photos with references; the first shows the same person in both)",
        preload=0 if APP.cache_examples else False,
    )


def _footer() -> str:
    minutes = max(1, round((APP.delete_after_s + APP.delete_every_s) / 60))
    return (
        f"Uploads and results are kept only in the server's temporary folder and deleted within {minutes} "
        f"minute(s). Limits: {APP.max_pixels / 1e6:g} megapixels per photo, {APP.max_file_size} per upload, "
        f"{_reference_text()}. Usage analytics are off."
    )


def _profile_tab() -> None:
    """Build a person profile from reference photos and download it (/build_profile)."""
    gr.Markdown(
        "Prepare and encode the reference photos **once**: download the profile and upload it later instead of the "
        "photos (in the Photo and Video tabs, or `psp-restore --profile`)."
    )
    refs = gr.File(label="Reference photos of the person", file_count="multiple", type="filepath")
    refs.data_model = OneOrManyFiles
    button = gr.Button("Build the profile", elem_id="profile-button")
    out = gr.File(label="Person profile (.psp)", elem_id="profile-download")
    summary = gr.Markdown(label="Profile", elem_id="profile-summary")
    button.click(build_profile, refs, [out, summary], api_name="build_profile", concurrency_limit=APP.concurrency)


def _video_tab() -> None:
    """Restore a short video with references or a profile (/restore_video); the upload is checked first."""
    where = "on the GPU" if ON_GPU else "**on this CPU, slowly**: the time is estimated when you upload"
    gr.Markdown(f"Short clips only (at most {APP.max_video_frames} frames); restored {where}.")
    video = gr.File(label="Video to restore", file_count="single", type="filepath", elem_id="video-input")
    info = gr.Markdown(label="Video", elem_id="video-info")
    refs = gr.File(label="Reference photos of the person", file_count="multiple", type="filepath")
    refs.data_model = OneOrManyFiles
    profile = gr.File(label="Person profile (.psp), instead of reference photos", file_count="single", type="filepath")
    button = gr.Button("Restore the video", variant="primary", elem_id="video-button")
    out = gr.File(label="Restored video (MP4)", elem_id="video-download")
    status = gr.Markdown(label="Status", elem_id="video-status")
    with gr.Accordion("Report", open=False):
        report = gr.JSON(label="Report", elem_id="video-report")
    video.upload(check_video, video, info, api_name="check_video", show_progress="minimal")
    button.click(
        restore_clip, [video, refs, profile], [out, status, report], api_name="restore_video", concurrency_limit=1
    )


def build_demo() -> gr.Blocks:
    """The page: a Photo tab (inputs and options left, results right), a Profile tab and a Video tab."""
    with gr.Blocks(
        title="PSP-GAN: personalised face restoration",
        analytics_enabled=False,
        delete_cache=(APP.delete_every_s, APP.delete_after_s),
    ) as demo:
        gr.Markdown("# PSP-GAN — personalised face restoration", elem_id="psp-title")
        gr.HTML(_model_banner())
        with gr.Tab("Photo"):
            _photo_tab()
        with gr.Tab("Person profile"):
            _profile_tab()
        with gr.Tab("Video"):
            _video_tab()
        gr.Markdown(_footer())
    return demo


def _photo_tab() -> None:
    """Inputs and options on the left, before/after, faces, references and report on the right (/restore)."""
    gr.Markdown(DESCRIPTION)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1):
            c = _input_column()
        with gr.Column(scale=2):
            outputs = _output_column()
    inputs = [
        c[k]
        for k in (
            "photo",
            "references",
            "faces",
            "upscale",
            "strength",
            "drop",
            "reference_faces",
            "aligned",
            "only_faces",
            "fidelity",
            "large_faces",
            "identity_margin",
            "profile",
        )
    ]
    c["photo"].change(
        preview_photo, c["photo"], [c["preview"], c["photo_info"]], api_name=False, show_progress="hidden"
    )
    event = c["run"].click(restore, inputs, outputs, api_name="restore", concurrency_limit=APP.concurrency)
    event.failure(show_failure, None, outputs, api_name=False, show_progress="hidden")
    _add_examples(c, outputs)


demo = build_demo()
demo.queue(default_concurrency_limit=APP.concurrency, max_size=APP.queue_size)
threading.Thread(target=_sweep_cache_forever, args=(demo,), name="psp-cache-sweep", daemon=True).start()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request of Gradio's own client otherwise
    log.info("model: %s (%s px, %s)", INFO.message, INFO.out_size, INFO.device)
    demo.launch(max_file_size=APP.max_file_size, theme=THEME, css=CSS, show_error=False, footer_links=["api", "gradio"])

"""`psp-restore`: restore the faces in photos, folders of photos or a video with reference photos of the same person
(or a person profile built from them once), on PyTorch or an ONNX export in onnxruntime."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")


def is_video_path(path: str | Path) -> bool:
    """True for the video files `psp-restore` restores as a video (one at a time, into `--out X.mp4`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="psp-restore",
        description="Restore the faces in photos with PSP-GAN, guided by reference photos of the same person. "
        "Folders are processed file by file; a bad file is reported and skipped. A video (.mp4, .mov, .mkv, .webm, "
        ".avi) is restored on its own into --out X.mp4.",
    )
    p.add_argument(
        "inputs", nargs="*", metavar="PHOTO_DIR_OR_VIDEO", help="photos and/or folders of photos, or one video"
    )
    p.add_argument(
        "--ref",
        nargs="+",
        action="extend",
        default=[],
        metavar="REF",
        help="reference photos (or folders) of the person: --ref a.jpg b.jpg or --ref a.jpg --ref b.jpg "
        "(every file is kept); none = blind restoration",
    )
    p.add_argument(
        "--out", default=None, metavar="DIR_OR_VIDEO", help="output folder (created if missing), or X.mp4 for a video"
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="ID_OR_PATH",
        help="Hub id or folder of PSP-GAN weights (default: $PSP_MODEL, then the bundled weights)",
    )
    p.add_argument("--upscale", type=float, default=2.0, help="output size / input size (default 2)")
    p.add_argument("--faces", choices=("all", "largest", "center"), default="all", help="which faces to restore")
    p.add_argument("--only-faces", action="store_true", help="write only the restored aligned faces")
    p.add_argument("--save-faces", action="store_true", help="also write the restored aligned faces")
    _add_restoration_options(p)
    _add_profile_video_backend_options(p)
    p.add_argument("--recursive", action="store_true", help="also look inside sub-folders")
    p.add_argument("--ext", choices=("png", "jpg", "webp"), default="png", help="output image format")
    p.add_argument("--report", action="store_true", help="write a JSON report next to each output")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _add_restoration_options(p: argparse.ArgumentParser) -> None:
    """How faces are restored and which references they get (PipelineConfig fields)."""
    p.add_argument("--strength", type=float, default=1.0, help="how much the references steer the result (0 = blind)")
    p.add_argument(
        "--fidelity",
        type=float,
        default=None,
        help="0 = the model's restoration, 1 = keep the input face (default: the pipeline's)",
    )
    p.add_argument(
        "--large-faces",
        choices=("restore", "keep"),
        default=None,
        help="faces far larger than the model's size: restore them (default) or leave them untouched",
    )
    p.add_argument(
        "--identity-margin",
        type=float,
        default=None,
        help="in group photos the best-matching face must beat the next by this cosine (default: the pipeline's)",
    )
    p.add_argument(
        "--keep-mismatched",
        action="store_true",
        help="keep references that look like someone else (default: drop them, with a warning)",
    )
    p.add_argument(
        "--reference-faces",
        choices=("best", "all"),
        default="best",
        help="in group photos, use the references for the best-matching face only, or for all faces",
    )
    p.add_argument("--max-references", type=int, default=None, help="at most this many references per face")
    p.add_argument("--aligned", action="store_true", help="inputs are already FFHQ-aligned face crops")
    p.add_argument(
        "--no-face",
        choices=("error", "upscale"),
        default="error",
        help="photos without a face: report as a failure (default) or only upscale them",
    )


def _add_profile_video_backend_options(p: argparse.ArgumentParser) -> None:
    """Person profiles (references prepared and encoded once), the video frame cap, and the inference backend."""
    p.add_argument(
        "--save-profile",
        default=None,
        metavar="FILE",
        help="build a person profile from the --ref photos and save it (e.g. alice.psp); inputs are optional",
    )
    p.add_argument(
        "--profile", default=None, metavar="FILE", help="restore with a saved person profile instead of --ref"
    )
    p.add_argument("--max-frames", type=int, default=None, help="refuse videos longer than this many frames")
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="run the model in PyTorch (default) or in onnxruntime from --model X.onnx (python -m psp_hub.export_onnx)",
    )
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: onnxruntime's)")


def usage_problem(args) -> str | None:
    """Why the combination of inputs and options cannot run, or None."""
    if not args.inputs and not args.save_profile:
        return "nothing to do: give photos, folders or a video to restore, or --save-profile FILE with --ref"
    if args.inputs and args.out is None:
        return "--out is required to restore photos or a video"
    if args.save_profile and not args.ref:
        return "--save-profile needs the reference photos: --ref a.jpg b.jpg ..."
    if args.profile and (args.ref or args.save_profile):
        return "--profile replaces --ref and --save-profile: give one or the other"
    if args.profile and not Path(args.profile).is_file():
        return f"--profile {args.profile}: no such file"
    if args.backend == "onnxruntime" and not str(args.model or "").endswith(".onnx"):
        return "--backend onnxruntime needs --model X.onnx (export one with python -m psp_hub.export_onnx)"
    videos = [i for i in args.inputs if is_video_path(i)]
    if videos and len(args.inputs) > 1:
        return f"restore one video at a time, alone: {videos[0]} was given with other inputs"
    if videos and not is_video_path(args.out):
        return f"--out must be a video file ({', '.join(VIDEO_SUFFIXES)}) for the video {videos[0]}"
    if not videos and args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        return f"--out {args.out} exists and is not a folder"
    return None


def collect_inputs(items: list[str], recursive: bool) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(file, output stem relative to --out) for each photo; plus problems (missing paths, empty folders)."""
    from psp_hub.common.imageio import is_image_path

    found, problems = [], []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = sorted(path.rglob("*") if recursive else path.iterdir())
            images = [f for f in files if f.is_file() and is_image_path(f)]
            if not images:
                problems.append(f"{item}: no image files in this folder")
            found += [(f, f.relative_to(path).with_suffix("")) for f in images]
        elif path.exists():
            found.append((path, Path(path.stem)))
        else:
            problems.append(f"{item}: no such file or folder")
    return found, problems


def _reference_files(items: list[str]) -> tuple[list[Path], list[str]]:
    """Reference files from files and folders."""
    files, problems = collect_inputs(items, recursive=False)
    return [f for f, _ in files], problems


def _config(args):
    """The run's PipelineConfig from the options (ValueError names a bad value)."""
    from psp_hub.pipeline import PipelineConfig

    optional = {"fidelity": args.fidelity, "large_faces": args.large_faces, "identity_margin": args.identity_margin}
    return PipelineConfig(
        faces=args.faces,
        upscale=args.upscale,
        only_faces=args.only_faces,
        strength=args.strength,
        input_is_aligned=args.aligned,
        no_face=args.no_face,
        max_references=args.max_references,
        mismatched_references="keep" if args.keep_mismatched else "drop",
        reference_faces=args.reference_faces,
        reference_shares=args.report,  # only a written report shows them (and without selection they cost model time)
        **{k: v for k, v in optional.items() if v is not None},  # unset: the pipeline's defaults
    )


def _load_pipeline(args, config):
    """The pipeline around the chosen model, with a one-line account of it on stderr."""
    from psp_hub.pipeline import RestorationPipeline

    t0 = time.perf_counter()
    if args.backend == "onnxruntime":
        pipe = _onnx_pipeline(args, config)
    else:
        pipe = RestorationPipeline.from_pretrained(
            args.model, device=None if args.device == "auto" else args.device, config=config
        )
    info = pipe.info
    print(
        f"model: {info.message} | {info.out_size} px, up to {info.max_references} references | "
        f"device {info.device}, {info.dtype} | loaded in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    if not info.trained:
        print(f"WARNING: {info.message}", file=sys.stderr)
    return pipe


def _onnx_pipeline(args, config):
    """The pipeline on an ONNX export in onnxruntime (CPU); FileNotFoundError when the file is missing."""
    from psp_hub.onnx.backend import OnnxBackend
    from psp_hub.pipeline import RestorationPipeline
    from psp_hub.pipeline.model_loading import ModelInfo

    path = Path(args.model)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}")
    backend = OnnxBackend(path, threads=args.threads)
    threads = f"{args.threads} threads" if args.threads else "default threads"
    info = ModelInfo(
        source=str(path),
        trained=True,  # python -m psp_hub.export_onnx refuses untrained weights
        out_size=backend.config.out_size,
        max_references=backend.config.max_references,
        device="cpu",
        dtype="float32",
        num_parameters=0,  # the weights live inside the graph
        message=f"ONNX export {path.name} in onnxruntime ({threads})",
    )
    return RestorationPipeline(backend, info=info, config=config)


def _profile_references(args, pipe, refs: list[Path]):
    """Build and save (--save-profile) or load (--profile) a person profile; its references for the run."""
    from psp_hub.profiles import PersonProfile

    if args.save_profile:
        profile = PersonProfile.build(pipe, [str(r) for r in refs], name=Path(args.save_profile).stem)
        profile.save(args.save_profile)
        print(f"profile: saved {args.save_profile}", file=sys.stderr)
    else:
        from safetensors import SafetensorError

        try:
            profile = PersonProfile.load(args.profile, pipe.model)
        except SafetensorError as exc:
            raise ValueError(f"{args.profile} is not a PSP-GAN person profile ({exc})") from None
        print(f"profile: {args.profile}", file=sys.stderr)
    for d in profile.dropped:
        print(f"warning: reference {d['reference']} left out: {d['reason']}", file=sys.stderr)
    if profile.reencoded:
        print(f"note: {profile.reencoded}", file=sys.stderr)
    print(f"references: {len(profile.sources)} from the profile ({', '.join(profile.sources)})", file=sys.stderr)
    return profile.reference_set(pipe)


def _references(args, pipe, refs: list[Path]):
    """The run's references: a person profile's (built or loaded), else the --ref photos prepared once."""
    if args.save_profile or args.profile:
        return _profile_references(args, pipe, refs)
    return _prepare_references(pipe, refs)


def _prepare_references(pipe, refs: list[Path]):
    """Align and embed the references once for the whole run; say how many are usable."""
    refset = pipe.prepare_references([str(r) for r in refs])
    for w in refset.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"references: {len(refset.usable)} usable of {len(refs)}"
        + ("" if refset.usable else " -> blind restoration (no reference photos)"),
        file=sys.stderr,
    )
    return refset


class _Run:
    """One run over the photos: output planning, clash and overwrite checks, writing, counting."""

    def __init__(self, args, pipe, refset) -> None:
        self.args, self.pipe, self.refset = args, pipe, refset
        self.out_dir = Path(args.out)
        self.seen: dict[Path, Path] = {}
        self.ok = self.failures = 0

    def _error(self, message: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"error: {message}", file=sys.stderr)
        self.failures += 1

    def _planned(self, stem: Path) -> tuple[list[Path], Path]:
        a = self.args
        target, report = self.out_dir / f"{stem}.{a.ext}", self.out_dir / f"{stem}.json"
        return ([] if a.only_faces else [target]) + ([report] if a.report else []), self.out_dir / f"{stem}_faces"

    def photo(self, photo: Path, stem: Path) -> None:
        """Restore one photo and write its outputs, or report why not (the run goes on)."""
        from psp_hub.common.imageio import ImageLoadError
        from psp_hub.pipeline import NoFaceError, PipelineError

        a = self.args
        planned, faces_dir = self._planned(stem)
        clash = next((p for p in planned if p in self.seen), None)
        if clash is not None:
            return self._error(f"{photo}: its output {clash} would overwrite the output of {self.seen[clash]}; skipped")
        existing = [p for p in planned + ([faces_dir] if a.only_faces or a.save_faces else []) if p.exists()]
        if existing and not a.overwrite:
            return self._error(f"{photo}: {existing[0]} exists (use --overwrite to replace it); skipped")
        try:
            result = self.pipe.restore(str(photo), self.refset)
        except (ImageLoadError, NoFaceError, PipelineError) as exc:
            return self._error(f"{photo}: {getattr(exc, 'reason', exc)}; skipped")
        except (RuntimeError, MemoryError) as exc:  # e.g. out of GPU memory: report, keep going
            return self._error(f"{photo}: {type(exc).__name__}: {exc}")
        for p in planned:
            self.seen[p] = photo
        self._write(result, planned, faces_dir, photo)
        self.ok += 1

    def _write(self, result, planned: list[Path], faces_dir: Path, photo: Path) -> None:
        from tqdm import tqdm

        from psp_hub.common.imageio import save_image

        a = self.args
        if result.image is not None:
            save_image(result.image, planned[0])
        if a.only_faces or a.save_faces:
            for face in result.faces:
                save_image(face.restored, faces_dir / f"face_{face.index:02d}.{a.ext}")
        if a.report:
            planned[-1].parent.mkdir(parents=True, exist_ok=True)
            planned[-1].write_text(json.dumps(result.report, indent=2))
        info = self.pipe.info
        for w in result.warnings:
            if info.trained or w != info.message:
                tqdm.write(f"warning: {photo.name}: {w}", file=sys.stderr)


def _restore_video(args, pipe, refset) -> int:
    """Restore one video into --out (H.264, audio copied); refuse clips over --max-frames."""
    import av

    from psp_hub.video import VideoConfig, restore_video

    src, dst = Path(args.inputs[0]), Path(args.out)
    if dst.exists() and not args.overwrite:
        print(f"error: {dst} exists (use --overwrite to replace it)", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = restore_video(pipe, src, dst, refset, VideoConfig(max_frames=args.max_frames, progress=not args.quiet))
    except (ValueError, OSError, av.FFmpegError) as exc:
        print(f"error: {src}: {exc}", file=sys.stderr)
        return EXIT_FAILED_INPUTS
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(
        f"done: {report.frames} frames, {report.faces_restored} faces in {report.tracks} tracks "
        f"({report.personalized_tracks} with the references), audio {'copied' if report.audio_copied else 'none'}, "
        f"{report.frames_per_second:.2f} frames/s in {report.seconds:.1f} s -> {dst}",
        file=sys.stderr,
    )
    return EXIT_OK


def _restore_photos(args, pipe, refset, photos, failures: int, t0: float) -> int:
    """Restore every photo, report and skip bad files; the exit code."""
    from tqdm import tqdm

    run = _Run(args, pipe, refset)
    run.failures = failures
    t_photos = time.perf_counter()
    bar = tqdm(photos, unit="photo", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
    for photo, stem in bar:
        bar.set_postfix_str(photo.name[:30])
        run.photo(photo, stem)
    bar.close()
    print(
        f"done: {run.ok} restored, {run.failures} failed, in {time.perf_counter() - t0:.1f} s "
        f"({(time.perf_counter() - t_photos) / max(len(photos), 1):.2f} s/photo after loading) -> {args.out}",
        file=sys.stderr,
    )
    return EXIT_OK if run.failures == 0 else EXIT_FAILED_INPUTS


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 some inputs failed, 2 usage/model error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    problem = usage_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    video = bool(args.inputs) and is_video_path(args.inputs[0])
    try:
        from psp_hub.pipeline import ModelLoadError

        try:
            config = _config(args)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        photos, problems = collect_inputs(args.inputs, args.recursive)
        refs, ref_problems = _reference_files(args.ref)
        for msg in problems + ref_problems:
            print(f"error: {msg}", file=sys.stderr)
        if args.inputs and not photos:
            print("error: no photos to restore", file=sys.stderr)
            return EXIT_USAGE
        t0 = time.perf_counter()
        try:
            pipe = _load_pipeline(args, config)
            refset = _references(args, pipe, refs)
        except (ModelLoadError, FileNotFoundError, RuntimeError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not args.inputs:
            code = EXIT_OK
        elif video:
            code = _restore_video(args, pipe, refset)
        else:
            code = _restore_photos(args, pipe, refset, photos, len(problems), t0)
        if not pipe.info.trained:
            print(
                "NOTE: these outputs come from an UNTRAINED model (random weights), not a real restoration.",
                file=sys.stderr,
            )
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

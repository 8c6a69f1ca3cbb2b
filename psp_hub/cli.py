"""`psp-restore`: restore the faces in photos or folders of photos with reference photos of the same person."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="psp-restore",
        description="Restore the faces in photos with PSP-GAN, guided by reference photos of the same person. "
        "Folders are processed file by file; a bad file is reported and skipped.",
    )
    p.add_argument("inputs", nargs="+", metavar="PHOTO_OR_DIR", help="photos and/or folders of photos")
    p.add_argument(
        "--ref",
        nargs="+",
        action="extend",
        default=[],
        metavar="REF",
        help="reference photos (or folders) of the person: --ref a.jpg b.jpg or --ref a.jpg --ref b.jpg "
        "(every file is kept); none = blind restoration",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
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


def collect_inputs(items: list[str], recursive: bool) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(file, output stem relative to --out) for each photo; plus problems (missing paths, empty folders)."""
    from psp_hub.imageio import is_image_path

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
        **{k: v for k, v in optional.items() if v is not None},  # unset: the pipeline's defaults
    )


def _load_pipeline(args, config):
    """The pipeline around the chosen model, with a one-line account of it on stderr."""
    from psp_hub.pipeline import RestorationPipeline

    t0 = time.perf_counter()
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
        from psp_hub.imageio import ImageLoadError
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

        from psp_hub.imageio import save_image

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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 some inputs failed, 2 usage/model error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        print(f"error: --out {out_dir} exists and is not a folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        from tqdm import tqdm

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
        if not photos:
            print("error: no photos to restore", file=sys.stderr)
            return EXIT_USAGE
        t0 = time.perf_counter()
        try:
            pipe = _load_pipeline(args, config)
        except (ModelLoadError, FileNotFoundError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        run = _Run(args, pipe, _prepare_references(pipe, refs))
        run.failures = len(problems)
        bar = tqdm(photos, unit="photo", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)
        for photo, stem in bar:
            bar.set_postfix_str(photo.name[:30])
            run.photo(photo, stem)
        bar.close()
        print(
            f"done: {run.ok} restored, {run.failures} failed, in {time.perf_counter() - t0:.1f} s -> {out_dir}",
            file=sys.stderr,
        )
        if not pipe.info.trained:
            print(
                "NOTE: these outputs come from an UNTRAINED model (random weights), not a real restoration.",
                file=sys.stderr,
            )
        return EXIT_OK if run.failures == 0 else EXIT_FAILED_INPUTS
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

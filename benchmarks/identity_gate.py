"""Calibrate the identity gate on held-out people, and check it on composited group photos.

    python benchmarks/identity_gate.py                   # threshold + margin from the corpus' test identities
    python benchmarks/identity_gate.py --groups 40       # also run the pipeline on 40 composited group photos

The gate compares a face with the unit mean (centroid) of K reference embeddings, so that is what is calibrated:
genuine trials (a photo of a test person vs the centroid of K=1..3 *other* photos of the same person) and impostor
trials (the same vs K photos of another test person), with the identity network the pipeline uses. The threshold is
the lowest cosine whose false-accept rate is <= --far for every K. The margin is calibrated on simulated group
photos (the person's face among 1-4 faces of other test people): the smallest margin by which the best face must
beat the next one so that stranger-only groups are accepted at most --far of the time, at the threshold.

Test identities follow the dataset builder's rule (psp_hub.data.build.splits with BuildConfig's seed and fractions, over
the rows the builder keeps), so none of these people was seen in training.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from psp_hub.common.imageio import load_image
from psp_hub.common.paths import faces_dir
from psp_hub.data.ages import is_older
from psp_hub.data.build.metadata import read_aligned_metadata
from psp_hub.data.build.splits import split_identities
from psp_hub.data.config import BuildConfig

KS = (1, 2, 3)


def test_people(folder: Path | None = None) -> dict[str, list[Path]]:
    """identity -> aligned face files of the corpus' test split (the builder's skip rules, strata, seed, fractions)."""
    folder = folder or faces_dir()
    cfg = BuildConfig(input=folder)
    by_person: dict[str, list] = defaultdict(list)
    for rec in read_aligned_metadata(folder):
        if (rec.native_px is not None and rec.native_px < cfg.min_native_px) or (
            rec.det_score is not None and rec.det_score < cfg.min_det_score
        ):
            continue
        by_person[rec.identity].append(rec)
    strata = {
        p: f"{rs[0].source}|{int(any(is_older(r.age, cfg.older_age) for r in rs))}" for p, rs in by_person.items()
    }
    split = split_identities({p: len(rs) for p, rs in by_person.items()}, strata, cfg.split_fractions, cfg.seed)
    return {p: [folder / r.file_name for r in rs] for p, rs in sorted(by_person.items()) if split[p] == "test"}


def embed_people(
    scorer, people: dict[str, list[Path]], degradation: str | None = None, seed: int = 0, max_photos: int = 8
) -> dict[str, np.ndarray]:
    """identity -> (n, D) unit embeddings of up to `max_photos` of its faces, optionally degraded first with a preset
    of the training degradation model (the pipeline gates degraded photos against clean references)."""
    from psp_hub.data.config import DegradationConfig
    from psp_hub.data.degradation import degrade, sample_degradation

    cfg = DegradationConfig.preset(degradation) if degradation else None
    rng = np.random.default_rng(seed)
    out = {}
    for person, files in people.items():
        faces = [load_image(f) for f in files[:max_photos]]
        if cfg is not None:
            faces = [
                np.clip(np.rint(degrade(f, sample_degradation(cfg, rng, f.shape[0]), rng) * 255), 0, 255).astype(
                    np.uint8
                )
                for f in faces
            ]
        out[person] = scorer.embed(faces)
    return out


def centroid(emb: np.ndarray) -> np.ndarray:
    c = emb.mean(axis=0)
    return c / max(float(np.linalg.norm(c)), 1e-8)


def pair_trials(
    emb: dict[str, np.ndarray],
    probes: dict[str, np.ndarray],
    k: int,
    rng: np.random.Generator,
    impostors_per_probe: int = 20,
):
    """Genuine and impostor cosines of probe vs centroid of K references (genuine: other photos of the probe's person;
    impostor: K photos of another test person who has at least K), and per impostor trial whether both are UTKFace
    people (labelled per photo, so such a pair may be one person twice; many are infants)."""
    owners = [p for p in emb if len(emb[p]) >= k]
    genuine, impostor, utk_pair = [], [], []
    for person, e in emb.items():
        for i in range(len(e)):
            probe = probes[person][i]
            others = np.delete(np.arange(len(e)), i)
            if len(others) >= k:
                genuine.append(float(probe @ centroid(e[rng.choice(others, k, replace=False)])))
            for other in rng.choice(owners, min(impostors_per_probe, len(owners)), replace=False):
                if other != person:
                    refs = emb[other][rng.choice(len(emb[other]), k, replace=False)]
                    impostor.append(float(probe @ centroid(refs)))
                    utk_pair.append(person.startswith("utkface:") and other.startswith("utkface:"))
    return np.array(genuine), np.array(impostor), np.array(utk_pair, dtype=bool)


def threshold_for(impostors: list[np.ndarray], far: float) -> float:
    """The lowest cosine (2 decimals, rounded up) with false-accept rate <= far for every impostor set."""
    t = max(float(np.quantile(imp, 1.0 - far)) for imp in impostors)
    return float(np.ceil(t * 100) / 100)


def group_trials(
    emb: dict[str, np.ndarray], probes: dict[str, np.ndarray], k: int, rng: np.random.Generator, n: int = 4000
):
    """Simulated group photos: (genuine best-vs-next, stranger best, stranger best-vs-next) per group of 2-5 faces."""
    multi = [p for p in emb if len(emb[p]) >= k + 1]
    people = list(emb)
    own_gap, stranger_best, stranger_gap = [], [], []
    for _ in range(n):
        person = multi[rng.integers(len(multi))]
        e = emb[person]
        idx = rng.permutation(len(e))
        c = centroid(e[idx[1 : k + 1]])
        others = [p for p in rng.choice(people, 5, replace=False) if p != person][: rng.integers(1, 5)]
        strangers = np.array([float(probes[p][rng.integers(len(emb[p]))] @ c) for p in others])
        own_gap.append((float(probes[person][idx[0]] @ c), float(strangers.max())))
        if len(strangers) >= 2:
            s = np.sort(strangers)[::-1]
            stranger_best.append(float(s[0]))
            stranger_gap.append(float(s[0] - s[1]))
    return np.array(own_gap), np.array(stranger_best), np.array(stranger_gap)


def margin_for(own: np.ndarray, threshold: float, cost: float = 0.01) -> float:
    """The largest margin (2 decimals, at most 0.5) that costs the own face at most `cost` of its acceptances in
    groups: the widest safety gap against a look-alike stranger that the genuine gaps allow."""
    base = float(np.mean(own[:, 0] >= threshold))
    best = 0.0
    for m in np.arange(0.0, 0.51, 0.01):
        if float(np.mean((own[:, 0] >= threshold) & (own[:, 0] - own[:, 1] >= m))) >= base - cost:
            best = round(float(m), 2)
    return best


def group_photo(faces: list[np.ndarray], scale: float = 1.5, gap: int = 48, colour: int = 120) -> np.ndarray:
    """A group photo: aligned face crops side by side on a plain wall, enlarged by `scale` (Lanczos)."""
    h = max(f.shape[0] for f in faces)
    tiles = []
    for f in faces:
        tiles += [np.full((h, gap, 3), colour, np.uint8), f]
    canvas = np.concatenate(tiles + [np.full((h, gap, 3), colour, np.uint8)], axis=1)
    canvas = cv2.copyMakeBorder(canvas, gap, gap, 0, 0, cv2.BORDER_CONSTANT, value=(colour,) * 3)
    return cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_LANCZOS4)


def tile_of(face, tile: int = 128 + 48, scale: float = 1.5) -> int:
    """Which crop of group_photo a detected face sits in (LFW crops may show a second, partial face)."""
    return int(((face.box[0] + face.box[2]) / 2 / scale) // tile)


def run_groups(people: dict[str, list[Path]], n: int, rng: np.random.Generator, model: str | None) -> None:
    """Run the pipeline on composited group photos: own references in the group, and only strangers in it."""
    from psp_hub.pipeline import RestorationPipeline

    pipe = RestorationPipeline.from_pretrained(model, device="cpu")
    multi = [p for p, fs in people.items() if len(fs) >= 4]
    counts = defaultdict(int)
    for g in range(n):
        person = multi[rng.integers(len(multi))]
        files = [people[person][i] for i in rng.permutation(len(people[person]))[:4]]
        refs = pipe.prepare_references(
            [load_image(f) for f in files[1:]], names=[f.name for f in files[1:]], aligned=True
        )
        strangers = [p for p in rng.choice(list(people), 4, replace=False) if p != person][:3]
        faces = [load_image(people[p][0]) for p in strangers]
        own_at = int(rng.integers(3))
        with_own = faces[:own_at] + [load_image(files[0])] + faces[own_at:2]
        for kind, photo, target in (("own", with_own, own_at), ("strangers", faces, None)):
            result = pipe.restore(group_photo(photo), refs, only_faces=True, upscale=1.0)
            got = sorted({tile_of(f) for f in result.faces if f.references_used})
            counts[f"{kind} groups"] += 1
            if target is None:
                counts["strangers personalised"] += bool(got)
            else:
                counts["own face personalised"] += got == [target]
                counts["wrong face personalised"] += any(i != target for i in got)
        if g < 3:
            print("  e.g.:", "; ".join(result.warnings[-2:]))
    for key, v in counts.items():
        print(f"{key}: {v}")


def _embeddings(people, degradation: str | None, cache: Path | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Embeddings of the test faces (clean, or degraded with a preset), read from / written to the cache folder."""
    from psp_hub.pipeline import IdentityScorer

    path = cache / f"test_faces_{degradation or 'clean'}_{seed}.npz" if cache else None
    if path is not None and path.is_file():
        return dict(np.load(path))
    emb = embed_people(IdentityScorer(), people, degradation, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **emb)
    return emb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--far", type=float, default=0.01, help="false accepts allowed (default 1 %%)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--groups", type=int, default=0, help="also run the pipeline on this many composited groups")
    ap.add_argument("--model", default=None)
    ap.add_argument("--cache", type=Path, default=None, help="keep the test faces' embeddings in this folder")
    ap.add_argument("--threshold", type=float, default=None, help="report rates and margin at this threshold instead")
    ap.add_argument("--degrade", default=None, help="degrade the probe faces with this preset (moderate, severe)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    people = test_people()
    emb = _embeddings(people, None, args.cache)
    probes = emb if not args.degrade else _embeddings(people, args.degrade, args.cache, args.seed)
    if args.degrade:
        print(f"probes degraded with the {args.degrade!r} preset; references clean")
    print(
        f"test identities: {len(people)} people, {sum(len(v) for v in emb.values())} faces embedded, "
        f"{sum(len(v) >= 2 for v in emb.values())} with >= 2 photos"
    )
    trials = {k: pair_trials(emb, probes, k, rng) for k in KS}
    t = threshold_for([imp for _, imp, _ in trials.values()], args.far)
    print(f"\nthreshold (FAR <= {args.far:.0%} for every K): {t:.2f}")
    if args.threshold is not None:
        t = args.threshold
        print(f"rates below at the given threshold {t:.2f}")
    print(
        f"{'K':>2s} {'genuine':>8s} {'impostor':>9s} {'FAR':>7s} {'TAR':>7s} {'gen median':>10s} {'imp p99':>8s} "
        f"{'FAR w/o UTK pairs':>17s}"
    )
    for k, (gen, imp, utk) in trials.items():
        print(
            f"{k:2d} {len(gen):8d} {len(imp):9d} {np.mean(imp >= t):7.2%} {np.mean(gen >= t):7.2%} "
            f"{np.median(gen):10.3f} {np.quantile(imp, 0.99):8.3f} {np.mean(imp[~utk] >= t):17.2%}"
        )
    t_clean = threshold_for([imp[~utk] for _, imp, utk in trials.values()], args.far)
    print(
        f"without UTKFace-vs-UTKFace trials the threshold would be {t_clean:.2f}: TAR "
        + ", ".join(f"K={k} {np.mean(gen >= t_clean):.1%}" for k, (gen, _, _) in trials.items())
    )
    print(
        "at the old threshold 0.30: FAR "
        + ", ".join(f"K={k} {np.mean(imp >= 0.30):.1%}" for k, (_, imp, _) in trials.items())
    )
    own, best, gap = group_trials(emb, probes, 3, rng)
    m = margin_for(own, t)
    own_ok = (own[:, 0] >= t) & (own[:, 0] - own[:, 1] >= m)
    print(
        f"\ngroups of 2-5 faces, K=3, threshold {t:.2f}: margin {m:.2f}; own face accepted {own_ok.mean():.1%} "
        f"(threshold alone {np.mean(own[:, 0] >= t):.1%}); stranger-only groups accepted "
        f"{np.mean((best >= t) & (gap >= m)):.2%} (old rule, best face >= 0.30: {np.mean(best >= 0.30):.1%})"
    )
    if args.groups:
        run_groups(people, args.groups, rng, args.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

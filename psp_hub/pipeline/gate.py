"""The identity gate: which faces of a photo get the references (they show one person), with one message per decision.

A face receives the references only if its cosine to the references' centroid is >= the threshold and, in a photo
with several faces, beats every other face by the margin; otherwise no face is personalised and the message says why.
Both numbers are calibrated on held-out people (benchmarks/identity_gate.py; the table is in docs/never-worse.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GateDecision:
    """The faces that get the references, one message for the report, and per face the reason it did or did not."""

    receivers: list[int]
    message: str | None
    reasons: dict[int, str] = field(default_factory=dict)


@dataclass
class GateInput:
    """What the gate sees per face: cosine to the references' centroid (None: no identity network), whether the face
    is large enough for that cosine to mean something, and its size (the fallback choice without identity)."""

    similarity: list[float | None]
    reliable: list[bool]
    span: list[float]


def decide(
    faces: GateInput, threshold: float, margin: float, reference_faces: str = "best", keep_mismatched: bool = False
) -> GateDecision:
    """Apply the gate; `reference_faces="all"` checks every face on its own, `"best"` gives them to one face at most."""
    n = len(faces.similarity)
    if n == 0:
        return GateDecision([], None)
    if any(s is None for s in faces.similarity):
        return _without_identity(faces, reference_faces)
    if reference_faces == "all":
        return _each_face(faces, threshold, keep_mismatched)
    if n == 1:
        return _single(faces, threshold, keep_mismatched)
    return _best_of_group(faces, threshold, margin, keep_mismatched)


def _without_identity(faces: GateInput, reference_faces: str) -> GateDecision:
    n = len(faces.span)
    if reference_faces == "all" or n == 1:
        return GateDecision(list(range(n)), "identity network unavailable: the references were used without a check")
    largest = max(range(n), key=lambda i: faces.span[i])
    return GateDecision(
        [largest],
        f"identity network unavailable: the references were used for the largest face (face {largest}) without a check",
        {i: "not the largest face" for i in range(n) if i != largest},
    )


def _single(faces: GateInput, threshold: float, keep: bool) -> GateDecision:
    sim = faces.similarity[0]
    if not faces.reliable[0]:
        return GateDecision(
            [0],
            f"face 0 is only about {faces.span[0]:.0f} px across, too small to check its identity: "
            "the references were used unchecked",
        )
    if sim >= threshold:
        return GateDecision([0], None, {0: f"matches the references (identity {sim:.2f} >= {threshold:.2f})"})
    why = f"the references do not look like face 0 (identity {sim:.2f} < {threshold:.2f}); they may show someone else"
    if keep:
        return GateDecision([0], why + ": used anyway, as asked")
    return GateDecision([], why + ": restored blind", {0: why})


def _each_face(faces: GateInput, threshold: float, keep: bool) -> GateDecision:
    receivers, reasons, weak = [], {}, []
    for i, sim in enumerate(faces.similarity):
        if not faces.reliable[i] or sim >= threshold or keep:
            receivers.append(i)
            if faces.reliable[i] and sim < threshold:
                weak.append(f"{i} ({sim:.2f})")
        else:
            reasons[i] = f"does not look like the references (identity {sim:.2f} < {threshold:.2f})"
    message = None
    if weak:
        message = f"faces {', '.join(weak)} do not look like the references (< {threshold:.2f}): used anyway, as asked"
    elif reasons:
        message = (
            f"references used for faces {receivers or 'none'}; faces {sorted(reasons)} do not look like them "
            f"(identity < {threshold:.2f}) and were restored blind"
        )
    return GateDecision(receivers, message, reasons)


def _best_of_group(faces: GateInput, threshold: float, margin: float, keep: bool) -> GateDecision:
    n = len(faces.similarity)
    checked = sorted((i for i in range(n) if faces.reliable[i]), key=lambda i: -faces.similarity[i])
    if not checked:
        return GateDecision([], f"{n} faces, all too small to check who they are: no face was personalised")
    best = checked[0]
    sim = faces.similarity[best]
    others = {i: f"the references went to face {best}" for i in range(n) if i != best}
    if sim < threshold:
        why = f"the references match none of the {n} faces (best: face {best}, identity {sim:.2f} < {threshold:.2f})"
        if keep:
            return GateDecision([best], why + f": used for face {best} anyway, as asked", others)
        return GateDecision([], why + ": no face was personalised", {i: why for i in range(n)})
    if len(checked) > 1 and sim - faces.similarity[checked[1]] < margin:
        nxt = checked[1]
        why = (
            f"faces {best} and {nxt} both resemble the references (identity {sim:.2f} and "
            f"{faces.similarity[nxt]:.2f}, closer than the margin {margin:.2f}): no face was personalised"
        )
        return GateDecision([], why, {i: why for i in range(n)})
    runner = f"; the next face scores {faces.similarity[checked[1]]:.2f}" if len(checked) > 1 else ""
    return GateDecision(
        [best],
        f"{n} faces: the references were used for face {best} only (identity {sim:.2f} >= "
        f"{threshold:.2f}{runner}); the others were restored blind",
        others,
    )

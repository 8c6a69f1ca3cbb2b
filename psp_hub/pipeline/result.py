"""What the pipeline returns: the restored photo, the restored aligned faces, and a JSON-ready report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RestoredFace:
    """One face: where it was, its aligned input and restoration, and the references it was restored with."""

    index: int
    box: np.ndarray  # (4,) x1, y1, x2, y2 in input-photo pixels
    landmarks: np.ndarray  # (5, 2) input-photo pixels
    score: float
    affine: np.ndarray  # (2, 3) photo -> aligned crop
    aligned_input: np.ndarray  # (S, S, 3) uint8
    restored: np.ndarray  # (S, S, 3) uint8, the model's restoration with the input's colours (what is pasted)
    references_used: list[str] = field(default_factory=list)
    reference_notes: list[dict] = field(default_factory=list)
    identity_input_vs_references: float | None = None  # mean cosine of the aligned input to the used references
    identity_restored_vs_references: float | None = None  # the same for the restored face
    identity_restored_vs_input: float | None = None
    region: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 of the face's square in the output photo
    output: np.ndarray | None = None  # that region of the output photo, full size (None in only-faces mode)
    pasted: bool = True  # False when left untouched (a large face with large_faces="keep")
    large: bool = False  # far larger than the model's size: its fine detail is the photo's own
    # each used reference's share of the fusion (PSPGANOutput.contributions, in references_used order; None when not
    # asked for, or from an ONNX file exported before the graphs had them): how much each photo was drawn on
    reference_shares: list[float] | None = None

    def summary(self) -> dict:
        """This face in the report."""
        return {
            "index": self.index,
            "box": [round(float(v), 1) for v in self.box],
            "detection_score": round(float(self.score), 4),
            "mode": "personalized" if self.references_used else "blind",
            "references_used": list(self.references_used),
            "reference_shares": None
            if self.reference_shares is None
            else {name: round(float(v), 4) for name, v in zip(self.references_used, self.reference_shares)},
            "identity_input_vs_references": self.identity_input_vs_references,
            "identity_restored_vs_references": self.identity_restored_vs_references,
            "identity_restored_vs_input": self.identity_restored_vs_input,
            "pasted": self.pasted,
            "large_face": self.large,
            "output_region": None if self.region is None else [int(v) for v in self.region],
            "references": self.reference_notes,
        }


@dataclass
class RestorationResult:
    """The restored photo (None in only-faces mode), the restored faces, warnings and the report dict."""

    image: np.ndarray | None
    faces: list[RestoredFace]
    report: dict
    warnings: list[str] = field(default_factory=list)

    @property
    def restored_faces(self) -> list[np.ndarray]:
        """The restored aligned faces (S, S, 3) at the model's size."""
        return [f.restored for f in self.faces]

    @property
    def output_faces(self) -> list[np.ndarray]:
        """Each face's square cut from the output photo at full output resolution (aligned faces in only-faces mode)."""
        return [f.output if f.output is not None else f.restored for f in self.faces]

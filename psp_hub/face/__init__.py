"""Face tools for real photos: detection (RetinaFace), FFHQ alignment, and feathered paste-back."""

from psp_hub.face.alignment import AlignedFace, align_face, estimate_similarity, ffhq_template, warp_to_crop
from psp_hub.face.detection import DetectedFace, FaceDetector, center_face, largest_face
from psp_hub.face.paste import feather_mask, paste_face, paste_faces

__all__ = [
    "AlignedFace",
    "DetectedFace",
    "FaceDetector",
    "align_face",
    "center_face",
    "estimate_similarity",
    "feather_mask",
    "ffhq_template",
    "largest_face",
    "paste_face",
    "paste_faces",
    "warp_to_crop",
]

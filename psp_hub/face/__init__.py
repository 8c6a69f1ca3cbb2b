"""Face tools for real photos: detection (RetinaFace), FFHQ alignment, and feathered paste-back.

The FFHQ template and the similarity fit live in psp_hub.common.geometry.
"""

from psp_hub.face.alignment import AlignedFace, align_face, warp_to_crop
from psp_hub.face.detection import DetectedFace, FaceDetector, center_face, largest_face
from psp_hub.face.paste import feather_mask, paste_face, paste_faces

__all__ = [
    "AlignedFace",
    "DetectedFace",
    "FaceDetector",
    "align_face",
    "center_face",
    "feather_mask",
    "largest_face",
    "paste_face",
    "paste_faces",
    "warp_to_crop",
]

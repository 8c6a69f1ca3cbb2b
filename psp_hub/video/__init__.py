"""Face restoration of videos: `restore` decodes, restores and encodes (PyAV), `tracking` links faces across frames."""

from .restore import VideoConfig, VideoProbe, VideoReport, estimate_seconds, iter_frames, probe, restore_video
from .tracking import FaceTracker, Track

__all__ = [
    "FaceTracker",
    "Track",
    "VideoConfig",
    "VideoProbe",
    "VideoReport",
    "estimate_seconds",
    "iter_frames",
    "probe",
    "restore_video",
]

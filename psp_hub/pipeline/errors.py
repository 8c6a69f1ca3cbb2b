"""Typed pipeline errors whose messages are written for the person using the app or the CLI."""

from __future__ import annotations

from psp_hub.common.imageio import ImageLoadError


class PipelineError(ValueError):
    """A request the pipeline cannot serve; `str(err)` is a readable message."""


class NoFaceError(PipelineError):
    """No face was found in the photo (or none passed the face filter)."""


class ModelLoadError(RuntimeError):
    """The restoration model could not be loaded from the given id or folder."""


__all__ = ["ImageLoadError", "ModelLoadError", "NoFaceError", "PipelineError"]

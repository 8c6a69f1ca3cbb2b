"""From ordinary photos to restored photos: face detection, alignment, reference checks, PSP-GAN, paste-back."""

from psp_hub.pipeline.background import BackgroundUpscaler, ResizeUpscaler
from psp_hub.pipeline.config import PipelineConfig
from psp_hub.pipeline.core import RestorationPipeline
from psp_hub.pipeline.errors import ImageLoadError, ModelLoadError, NoFaceError, PipelineError
from psp_hub.pipeline.identity import IdentityScorer
from psp_hub.pipeline.model_loading import ModelInfo, load_restoration_model, pick_device, pick_dtype
from psp_hub.pipeline.references import Reference, ReferenceSet
from psp_hub.pipeline.result import RestorationResult, RestoredFace

__all__ = [
    "BackgroundUpscaler",
    "IdentityScorer",
    "ImageLoadError",
    "ModelInfo",
    "ModelLoadError",
    "NoFaceError",
    "PipelineConfig",
    "PipelineError",
    "Reference",
    "ReferenceSet",
    "ResizeUpscaler",
    "RestorationPipeline",
    "RestorationResult",
    "RestoredFace",
    "load_restoration_model",
    "pick_device",
    "pick_dtype",
]

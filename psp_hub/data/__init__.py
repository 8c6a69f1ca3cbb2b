"""Training data for PSP-GAN: stream a Hub-style face dataset with the 70/30 older mix, degrade it by eq. (10).

Building the dataset lives in `psp_hub.data.build`; its entry points are re-exported here for convenience.
"""

from .ages import OLDER_AGE, age_group, is_older
from .build import build_dataset, push_to_hub
from .config import DEFAULT_DATASET_DIR, BuildConfig, DataConfig, DegradationConfig
from .degradation import DegradationParams, degrade, sample_degradation
from .evaluation import EvalDataset, build_eval_dataset
from .mixing import MixSchedule
from .references import ReferenceStore
from .resident_batches import build_train_batches
from .schedule import boost_start_iteration, older_fraction_for, phase_at, phase_position
from .schema import FEATURES
from .sources import interleaved_stream
from .stream import TrainStream, build_train_dataloader, collate_samples

__all__ = [
    "DEFAULT_DATASET_DIR",
    "FEATURES",
    "OLDER_AGE",
    "BuildConfig",
    "DataConfig",
    "DegradationConfig",
    "DegradationParams",
    "EvalDataset",
    "MixSchedule",
    "ReferenceStore",
    "TrainStream",
    "age_group",
    "boost_start_iteration",
    "build_dataset",
    "build_eval_dataset",
    "build_train_batches",
    "build_train_dataloader",
    "collate_samples",
    "degrade",
    "interleaved_stream",
    "is_older",
    "older_fraction_for",
    "phase_at",
    "phase_position",
    "push_to_hub",
    "sample_degradation",
]

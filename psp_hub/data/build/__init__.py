"""Building a face dataset: photo folders -> detect, align, split by person, shard, card, report (Hub layout).

The streaming side (`psp_hub.data`) reads what this writes and never imports from here; this side may use the
shared facts there (config, schema, ages, sharpness).
"""

from ..config import BuildConfig
from .builder import build_dataset, remove_build_state
from .corpus_splits import corpus_split_map
from .hub import push_to_hub
from .manifest import PhotoSource, load_manifest
from .metadata import read_aligned_metadata
from .sample_corpus import build_sample_dataset, make_sample_corpus
from .splits import SPLITS, split_identities

__all__ = [
    "SPLITS",
    "BuildConfig",
    "PhotoSource",
    "build_dataset",
    "build_sample_dataset",
    "corpus_split_map",
    "load_manifest",
    "make_sample_corpus",
    "push_to_hub",
    "read_aligned_metadata",
    "remove_build_state",
    "split_identities",
]

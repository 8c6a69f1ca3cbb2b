"""Evaluation of a model on held-out identities (`python -m psp_hub.evaluate`): the methods (`restorers`), the
metrics per image (`scoring`), the loop (`run`), the tables and model card (`report`), the grid and the CLI."""

from .cli import main
from .config import METRICS, EvalConfig
from .restorers import bicubic_baseline
from .run import evaluate, other_person_index

__all__ = ["METRICS", "EvalConfig", "bicubic_baseline", "evaluate", "main", "other_person_index"]

"""torch.compile for the training step, with enough room for every compiled region's variants.

Dynamo keeps compiled graphs per *code object* and silently falls back to eager after `recompile_limit` (8)
entries. Under mixed precision accelerate wraps every prepared module's forward in the same function, so the
generator and the four discriminators (each compiled for two or three grad states) shared one budget of 8, went
past it, and some of them ran eager (seen on the H200: "hit config.recompile_limit (8)", 8.7 k kernels a step).
"""

from __future__ import annotations

import torch
from torch import nn

# generator 1-2 entries, global D 2, each of 3 component Ds 3 (G step, no_grad style features, D step): ~15 in all
RECOMPILE_LIMIT = 64


def _allow_recompiles() -> None:
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)


def compile_in_place(module: nn.Module, **options) -> nn.Module:
    """Compile `module` in place (its parameter names, state dict and checkpoints stay those of the eager module).

    `options` go to torch.compile (e.g. `backend`).
    """
    _allow_recompiles()
    module.compile(**options)
    return module


def compiled_view(module: nn.Module, **options):
    """A compiled wrapper sharing `module`'s parameters; `module` itself stays eager (e.g. for double backward)."""
    _allow_recompiles()
    return torch.compile(module, **options)

"""Fixed networks (feature extractors, metrics, the identity encoder): no trainable parameters, always in eval mode."""

from __future__ import annotations

from torch import nn


class FrozenEval(nn.Module):
    """A module that is never trained: `freeze()` turns its gradients off, and `train()` always means eval.

    A training loop's `model.train()` reaches every submodule, so the override keeps dropout and batch-norm
    statistics of a loss network fixed even when it sits inside a trained module.
    """

    def freeze(self) -> FrozenEval:
        """No parameter requires grad, and the module is in eval mode; call once at the end of `__init__`."""
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> FrozenEval:  # typing.Self needs 3.11; 3.10 is supported
        """Stay in eval mode whatever the caller asks."""
        return super().train(False)

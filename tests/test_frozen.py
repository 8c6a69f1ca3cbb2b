"""FrozenEval: a fixed network stays in eval mode and untrainable, also inside a module that is put in training."""

from __future__ import annotations

import torch
from torch import nn

from psp_hub.common import FrozenEval


class _Fixed(FrozenEval):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
        self.freeze()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_freeze_turns_off_grads_and_training_mode():
    fixed = _Fixed()
    assert not fixed.training and not any(m.training for m in fixed.modules())
    assert not any(p.requires_grad for p in fixed.parameters())
    assert fixed.train() is fixed and not fixed.training  # train() returns the module, still in eval


def test_a_trained_parent_does_not_unfreeze_it():
    parent = nn.ModuleDict({"head": nn.Linear(4, 4), "loss_net": _Fixed()}).train()
    assert parent.training and parent["head"].training
    assert not any(m.training for m in parent["loss_net"].modules())
    x = torch.randn(2, 3, 8, 8)
    stats = parent["loss_net"].net[1].running_mean.clone()
    a, b = parent["loss_net"](x), parent["loss_net"](x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # no dropout
    torch.testing.assert_close(parent["loss_net"].net[1].running_mean, stats, rtol=0, atol=0)  # no BN update
    x.requires_grad_(True)
    parent["loss_net"](x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # differentiable w.r.t. its input
    assert all(p.grad is None for p in parent["loss_net"].parameters())

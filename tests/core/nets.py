"""Tiny float64 networks for the core tests, with hand-set or seeded weights.

Layer names come from an ``OrderedDict`` so that they are the module qualified names
``split_model`` and ``build_circuit`` address (``c1``, ``c2``, ``fc`` ...).
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurflow import Circuit, CircuitConfig, build_circuit

# Checks that need CUDA are marked ``gpu`` and skipped, with this reason, where there is none.
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")

TINY_LAYERS = ("fc", "c3", "c2", "c1")

# Planted circuit: channel t of layer c2 reads (weight 1) exactly these channels of c1;
# every other c1 -> c2 weight is 0.02.
PLANTED = {0: (1, 4, 6), 1: (0, 2, 3), 2: (8, 9, 10), 3: (12, 13, 14)}
PLANTED_CHANNELS = 16
PLANTED_LAYERS = ("fc", "c2", "c1")


def tiny_cnn(seed: int = 0) -> nn.Sequential:
    """A seeded random CNN: c1 (8 ch) -> c2 (16 ch, /2) -> c3 (16 ch, /2) -> pool -> flat -> fc (4)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        OrderedDict(
            c1=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
            c2=nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU()),
            c3=nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU()),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(16, 4),
        )
    )
    return model.double().eval()


def tiny_images(seed: int = 0, n: int = 6, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)


TINY_CONFIG = CircuitConfig(tau=4, k=10, steps=8, max_semantic_groups=4, max_neuron_groups=5)


def build_tiny(config: CircuitConfig = TINY_CONFIG, class_index: int = 2, device: str = "cpu") -> Circuit:
    """The tiny random CNN's circuit of class 2 (a fresh model and images each call)."""
    model = tiny_cnn().to(device)
    return build_circuit(model, tiny_images(), class_index, list(TINY_LAYERS), config, model_name="tiny", class_name="two")


def planted_net() -> nn.Sequential:
    """Hand-set weights: c1 = identity (1x1) + ReLU, c2 = the planted 1x1 wiring + ReLU.

    ``fc`` logit 0 reads mostly c2 channel 0, so that channel is a core neuron of the root.
    """
    c = PLANTED_CHANNELS
    c1 = nn.Conv2d(c, c, 1)
    c2 = nn.Conv2d(c, len(PLANTED), 1)
    fc = nn.Linear(len(PLANTED), 3)
    with torch.no_grad():
        c1.weight.copy_(torch.eye(c).view(c, c, 1, 1))
        c1.bias.zero_()
        w = torch.full((len(PLANTED), c), 0.02)
        for target, channels in PLANTED.items():
            w[target, list(channels)] = 1.0
        c2.weight.copy_(w.view(len(PLANTED), c, 1, 1))
        c2.bias.zero_()
        fc.weight.copy_(torch.tensor([[1.0, 0.2, 0.1, 0.05], [0.1, 1.0, 0.1, 0.1], [0.1, 0.1, 1.0, 0.1]]))
        fc.bias.zero_()
    model = nn.Sequential(
        OrderedDict(
            c1=nn.Sequential(c1, nn.ReLU()),
            c2=nn.Sequential(c2, nn.ReLU()),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=fc,
        )
    )
    return model.double().eval()


def planted_images(seed: int = 0, n: int = 4, size: int = 16) -> torch.Tensor:
    """Smooth non-negative random fields, independent per channel, so patch means vary."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, PLANTED_CHANNELS, 4, 4, generator=g, dtype=torch.float64)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def conv_bn_relu(seed: int = 0, c_in: int = 4, c_out: int = 5) -> nn.Sequential:
    """conv -> BatchNorm (eval, non-trivial running stats and affine) -> ReLU, float64."""
    torch.manual_seed(seed)
    seg = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())
    bn = seg[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return seg.double().eval()

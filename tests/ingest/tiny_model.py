"""A tiny CNN factory for ingest tests (``--model tests/ingest/tiny_model.py:make``)."""

from collections import OrderedDict

import torch
from torch import nn


def make() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            c1=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
            c2=nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU()),
            c3=nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, stride=2), nn.ReLU()),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(16, 3),
        )
    )

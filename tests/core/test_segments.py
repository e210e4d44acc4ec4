"""torch.fx prefix/segment cuts (neurflow.segments) and layer presets."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

from neurflow import preset_layers, split_model
from neurflow.attribution import integrated_gradients
from neurflow.segments import neuron_activations

from .nets import tiny_cnn

RESNET18_LAYERS = [
    "fc", "avgpool", "layer4.1", "layer4.0", "layer3.1", "layer3.0", "layer2.1", "layer2.0",
    "layer1.1", "layer1.0", "maxpool", "relu", "conv1",
]  # "bn1" (followed by the stem's in-place ReLU) is covered by the in-place tests below
GOOGLENET_LAYERS = [*preset_layers("googlenet"), "conv3", "conv2", "maxpool1", "conv1"]


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).double().eval()


@pytest.fixture(scope="module")
def googlenet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.googlenet(weights=None, init_weights=False, aux_logits=False).double().eval()


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.fixture(scope="module")
def resnet18_split(resnet18):
    return split_model(resnet18, RESNET18_LAYERS)


@pytest.fixture(scope="module")
def googlenet_split(googlenet):
    return split_model(googlenet, GOOGLENET_LAYERS)


def _pairs(layers):
    return [pytest.param(u, lo, id=f"{lo}->{u}") for u, lo in zip(layers[:-1], layers[1:])]


@pytest.fixture(scope="module")
def resnet18_feats(resnet18_split, x64):
    """Every layer's output from one prefix pass (equal to one prefix per layer, checked below)."""
    with torch.no_grad():
        return resnet18_split.extractor()(x64)


@pytest.fixture(scope="module")
def googlenet_feats(googlenet_split, x64):
    with torch.no_grad():
        return googlenet_split.extractor()(x64)


@torch.no_grad()
@pytest.mark.parametrize("upper,lower", _pairs(RESNET18_LAYERS))
def test_resnet18_prefix_then_segment_is_bit_exact(resnet18_split, resnet18_feats, upper, lower):
    assert resnet18_split.lower_of(upper) == lower
    assert torch.equal(resnet18_split.segment(upper)(resnet18_feats[lower]), resnet18_feats[upper])


@torch.no_grad()
@pytest.mark.parametrize("upper,lower", _pairs(GOOGLENET_LAYERS))
def test_googlenet_prefix_then_segment_is_bit_exact(googlenet_split, googlenet_feats, upper, lower):
    assert torch.equal(googlenet_split.segment(upper)(googlenet_feats[lower]), googlenet_feats[upper])


@torch.no_grad()
@pytest.mark.parametrize("which", ["resnet18", "googlenet"])
def test_extractor_logits_equal_model_output(request, x64, which):
    model = request.getfixturevalue(which)
    split = request.getfixturevalue(f"{which}_split")
    everything = request.getfixturevalue(f"{which}_feats")
    assert torch.equal(split.extractor(["fc"])(x64)["fc"], model(x64))
    # one extractor for every layer gives the same tensors as one prefix per layer
    assert list(everything) == list(split.layers)
    for name in (split.layers[2], split.layers[-2], split.layers[-1]):
        assert torch.equal(everything[name], split.extractor([name])(x64)[name])


def test_unknown_layer_lists_valid_names_and_suggests(resnet18):
    with pytest.raises(ValueError) as info:
        split_model(resnet18, ["fc", "layer4.3"])
    msg = str(info.value)
    assert "unknown layer 'layer4.3'" in msg
    assert "Did you mean: layer4.1" in msg
    assert "Valid layer names: conv1, bn1, relu, maxpool, layer1" in msg


def test_root_module_name_is_not_a_layer(resnet18):
    with pytest.raises(ValueError, match="unknown layer ''"):
        split_model(resnet18, ["fc", ""])


@pytest.mark.parametrize(
    "layers,message",
    [
        ([], "the layer list is empty"),
        (["fc", "layer4.1", "fc"], r"duplicate layer names in \['fc', 'layer4.1', 'fc'\]"),
        (["layer4", "layer4.1"], "layer 'layer4.1' is inside layer 'layer4'; requested layers must not be nested"),
        (["layer4.0.conv1", "layer4.0"], "layer 'layer4.0.conv1' is inside layer 'layer4.0'"),
        (["layer3.0", "layer4.0"], "layer 'layer3.0' does not depend on layer 'layer4.0'; list layers in forward order"),
        # BasicBlock calls its own relu twice
        (["fc", "layer1.0.relu"], "layer 'layer1.0.relu' is called more than once in forward"),
    ],
)
def test_bad_layer_lists(resnet18, layers, message):
    with pytest.raises(ValueError, match=message):
        split_model(resnet18, layers)


def test_cut_bypassed_by_a_skip_connection_names_the_node(resnet18):
    # layer4.0 adds its downsample branch (computed from layer3's output) after conv2.
    with pytest.raises(ValueError) as info:
        split_model(resnet18, ["layer4.1", "layer4.0.conv2"])
    msg = str(info.value)
    assert "cannot cut between 'layer4.0.conv2' and 'layer4.1'" in msg
    assert "reads 'layer4_0_downsample_1'" in msg
    assert "skip connection" in msg
    assert "node 'add_" in msg


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.spare = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def test_layer_never_called_in_forward():
    with pytest.raises(ValueError, match="layer 'spare' exists but is never called in _Unused.forward"):
        split_model(_Unused(), ["head", "spare"])


class _DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.conv(x)
        if h.sum() > 0:  # not traceable by torch.fx
            h = -h
        return self.head(h.mean((2, 3)))


def test_untraceable_model_is_a_value_error():
    with pytest.raises(ValueError, match="could not trace _DataDependent with torch.fx"):
        split_model(_DataDependent(), ["head", "conv"])


def test_split_api_errors(resnet18_split):
    with pytest.raises(ValueError, match="layer 'conv1' is the lowest requested layer; it has no segment below it"):
        resnet18_split.segment("conv1")
    with pytest.raises(ValueError, match="layer 'conv1' is the lowest requested layer"):
        resnet18_split.lower_of("conv1")
    with pytest.raises(ValueError, match="layer 'layer4' is not one of the split's layers"):
        resnet18_split.extractor(["layer4"])
    with pytest.raises(ValueError, match="layer 'layer4' is not one of the split's layers"):
        resnet18_split.segment("layer4")


def test_split_shares_parameters_and_traces_in_current_mode(resnet18_split, resnet18):
    assert resnet18_split.layers == tuple(RESNET18_LAYERS)
    assert resnet18_split.graph_module.get_submodule("fc") is resnet18.fc
    assert resnet18_split.segment("layer4.1").get_submodule("layer4.1") is resnet18.layer4[1]


def test_resnet50_preset_splits():
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    layers = preset_layers("resnet50")
    assert layers[0] == "fc" and layers[-1] == "layer2.3" and len(layers) == 11
    split = split_model(model, layers)
    assert split.layers == layers
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = split.segment("layer4.2")(split.extractor(["layer4.1"])(x)["layer4.1"])
        assert torch.equal(y, split.extractor(["layer4.2"])(x)["layer4.2"])


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"no layer preset for 'vgg16' \(presets: googlenet, resnet50\); pass the layers explicitly"):
        preset_layers("vgg16")


def test_neuron_activations_is_the_spatial_mean():
    out = torch.arange(24, dtype=torch.float64).view(2, 3, 2, 2)
    assert torch.equal(neuron_activations(out), out.mean((2, 3)))
    flat = torch.randn(2, 5)
    assert neuron_activations(flat) is flat
    with pytest.raises(ValueError, match=r"batch and a channel axis, got shape \(5,\)"):
        neuron_activations(torch.randn(5))


# -- an in-place op right after a requested layer ----------------------------------------


def _inplace_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            c1=nn.Conv2d(3, 4, 3, padding=1),
            r1=nn.ReLU(inplace=True),  # as in VGG / AlexNet / the ResNet stem
            c2=nn.Conv2d(4, 4, 3, padding=1),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(4, 3),
        )
    ).double().eval()


@torch.no_grad()
def test_inplace_op_after_layer_does_not_corrupt_outputs():
    model = _inplace_net()
    split = split_model(model, ["fc", "c2", "c1"])
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    alone = split.extractor(["c1"])(x)["c1"]
    assert alone.min() < 0  # a conv output, before the ReLU
    assert torch.equal(split.extractor(["c2", "c1"])(x)["c1"], alone)
    inp = alone.clone()
    split.segment("c2")(inp)
    assert torch.equal(inp, alone)


@torch.no_grad()
def test_resnet18_bn1_survives_the_inplace_stem_relu(resnet18, x64):
    split = split_model(resnet18, ["relu", "bn1"])
    bn1 = resnet18.bn1(resnet18.conv1(x64))
    assert torch.equal(split.extractor(["bn1"])(x64)["bn1"], bn1)  # passes: nothing after bn1 runs
    assert torch.equal(split.extractor()(x64)["bn1"], bn1)  # fails: holds relu(bn1)


def test_inplace_op_after_layer_segment_is_differentiable():
    model = _inplace_net()
    split = split_model(model, ["fc", "c2", "c1"])
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    attr = integrated_gradients(split.segment("c2"), x, torch.tensor([0, 1]), steps=4)
    assert attr.shape == (2, 2, 4)


def test_tiny_cnn_split_round_trip():
    model = tiny_cnn()
    split = split_model(model, ["fc", "c3", "c2", "c1"])
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        feats = split.extractor()(x)
        assert torch.equal(feats["fc"], model(x))
        for upper, lower in zip(split.layers[:-1], split.layers[1:]):
            assert torch.equal(split.segment(upper)(feats[lower]), feats[upper])

"""Layer presets: the paper's layer lists for its two models, logit layer first."""

from __future__ import annotations

__all__ = ["LAYER_PRESETS", "preset_layers"]

LAYER_PRESETS: dict[str, tuple[str, ...]] = {
    # Section 4: ResNet50 from the classifier down to layer2.3.
    "resnet50": (
        "fc", "layer4.2", "layer4.1", "layer4.0",
        "layer3.5", "layer3.4", "layer3.3", "layer3.2", "layer3.1", "layer3.0",
        "layer2.3",
    ),
    # Section 4: GoogLeNet from the classifier down to maxpool2.
    "googlenet": (
        "fc", "inception5b", "inception5a", "inception4e", "inception4d", "inception4c",
        "inception4b", "inception4a", "inception3b", "inception3a", "maxpool2",
    ),
}


def preset_layers(model_name: str) -> tuple[str, ...]:
    """The preset layer list of a model, or a ValueError naming the presets."""
    try:
        return LAYER_PRESETS[model_name]
    except KeyError:
        raise ValueError(
            f"no layer preset for '{model_name}' (presets: {', '.join(sorted(LAYER_PRESETS))}); pass the layers explicitly"
        ) from None

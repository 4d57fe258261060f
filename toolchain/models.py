"""Model specs by name, and the twin builders: a PyTorch module and a Keras model with
the same layers, the same parameter count and, given the same weights, the same outputs.

The spec includes the input scaling: images arrive as uint8 and are divided by 255, so
every model and every artifact takes float32 in [0, 1]. The PyTorch twin takes NCHW,
the Keras twin NHWC, each its framework's native layout.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .errors import BadInput

ARCHS = ("cnn",)
SCALING = {"input_dtype": "uint8", "divide_by": 255.0, "range": [0.0, 1.0]}


@dataclass
class ModelSpec:
    arch: str
    input_shape: tuple[int, int, int]  # H, W, C
    classes: list[str]
    scaling: dict = field(default_factory=lambda: dict(SCALING))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["layers"] = describe(self)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ModelSpec":
        """A spec from spec.json, every field checked: the file may be hand-edited or damaged."""
        def bad(what):
            raise BadInput(f"model spec: {what}")
        if not isinstance(d.get("arch"), str):
            bad("arch is not a name")
        shape = d.get("input_shape")
        if not (isinstance(shape, list) and len(shape) == 3 and all(type(v) is int for v in shape)):
            bad("input_shape is not [height, width, channels]")
        classes = d.get("classes")
        if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            bad("classes is not a list of names")
        scaling = d.get("scaling")
        divide_by = scaling.get("divide_by") if isinstance(scaling, dict) else None
        if not (type(divide_by) in (int, float) and math.isfinite(divide_by) and divide_by > 0):
            bad("scaling is not {'divide_by': a positive number, ...}")
        spec = cls(arch=d["arch"], input_shape=tuple(shape), classes=list(classes), scaling=dict(scaling))
        check(spec)
        return spec


MAX_SIDE = 1024     # the CNNs here are for small images; bigger ones need another arch
MAX_CLASSES = 1000


def check(spec: ModelSpec) -> None:
    if spec.arch not in ARCHS:
        raise BadInput(f"unknown model {str(spec.arch)[:40]!r}; choose one of {', '.join(ARCHS)}")
    h, w, c = spec.input_shape
    if not (4 <= h <= MAX_SIDE and 4 <= w <= MAX_SIDE):
        raise BadInput(f"model {spec.arch!r} takes images from 4x4 to {MAX_SIDE}x{MAX_SIDE}, got {h}x{w}")
    if c not in (1, 3):
        raise BadInput(f"model {spec.arch!r} takes 1 or 3 channels, got {c}")
    if not 2 <= len(spec.classes) <= MAX_CLASSES:
        raise BadInput(f"model {spec.arch!r} needs 2 to {MAX_CLASSES} classes, got {len(spec.classes)}")


def describe(spec: ModelSpec) -> list[str]:
    return ["conv3x3(32, same)", "relu", "maxpool2", "conv3x3(64, same)", "relu", "maxpool2",
            "flatten", "dense(128)", "relu", f"dense({spec.num_classes})"]


def _flat_features(spec: ModelSpec) -> int:
    h, w, _ = spec.input_shape
    return (h // 2 // 2) * (w // 2 // 2) * 64


def build_torch(spec: ModelSpec):
    import torch.nn as nn
    from collections import OrderedDict
    check(spec)
    c = spec.input_shape[2]
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(c, 32, 3, padding=1)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(32, 64, 3, padding=1)),
        ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(_flat_features(spec), 128)),
        ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(128, spec.num_classes)),
    ]))


def build_keras(spec: ModelSpec):
    import keras
    from keras import layers
    check(spec)
    return keras.Sequential([
        keras.Input(shape=spec.input_shape, name="image"),
        layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(128, activation="relu", name="fc1"),
        layers.Dense(spec.num_classes, name="fc2"),
    ], name=spec.arch)


def count_params_torch(model) -> int:
    return sum(p.numel() for p in model.parameters())

"""Model specs: the zoo architecture or the user's graph file, the input and its scaling,
the classes; and the three twins built from the spec's graph (runtime/graph.py): a
PyTorch module, a Keras model and a NumPy network with the same layers, the same
parameter count and, given the same weights, the same outputs.

The spec includes the input scaling: images arrive as uint8 and are divided by 255, so
every model and every artifact takes float32 in [0, 1]. The PyTorch twin takes NCHW,
the Keras and NumPy twins NHWC, each its framework's native layout.

spec.json holds the whole graph, so a run folder describes its own network whatever
the zoo later becomes. The `mlp` spec (hidden sizes and one activation) exists only in
NumPy: it is the from-scratch network of the project's seed, which learns XOR with
2-4-1 and 2-4-4-1 sigmoid layers. With two classes its output is one unit, read as
[0, z] logits (softmax of those is the seed's sigmoid output).
"""
from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecnn.runtime import graph
from edgecnn.runtime import npnet

from . import preprocess, zoo
from .errors import BadInput

ARCHS = zoo.NAMES
ACTIVATIONS = ("relu", "sigmoid")
MAX_HIDDEN_LAYERS, MAX_UNITS = 16, 4096
MAX_WIDTH = 4.0
# Far above an edge classifier (the MNIST cnn: 0.42 M parameters, 4.2 M MACs per image),
# and below what the NumPy runtime refuses to load
MAX_PARAMS, MAX_MACS = 50_000_000, 2_000_000_000
assert MAX_PARAMS < npnet.MAX_PARAMS
ARCH_FILE_SUFFIXES = (".toml", ".json")
MAX_ARCH_FILE = 1 << 20


@dataclass
class ModelSpec:
    arch: str                                   # a zoo name, or "custom" for a user's graph
    input_shape: tuple[int, int, int]           # H, W, C
    classes: list[str]
    scaling: dict = field(default_factory=lambda: dict(preprocess.DEFAULT))
    hidden: list[int] = field(default_factory=list)  # mlp only: units per hidden layer
    activation: str = "relu"                          # mlp only: after each hidden layer
    width: float = 1.0                                # mobilenet only: channel multiplier
    nodes: list[dict] | None = None             # the graph; made from the zoo when not given
    source: str | None = None                   # custom only: the file the graph came from

    def __post_init__(self):
        self.input_shape = tuple(self.input_shape)
        if self.nodes is None and self.arch in zoo.NAMES:
            _check_options(self)
            self.nodes = zoo.nodes(self.arch, self.num_classes, self.width, self.hidden, self.activation)
        self._graph = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def graph(self) -> graph.Graph:
        """The checked graph; BadInput naming the layer when it does not fit this input."""
        if self._graph is None:
            if self.arch not in (*zoo.NAMES, zoo.CUSTOM):
                raise BadInput(f"unknown model {str(self.arch)[:40]!r}; choose one of {', '.join(ARCHS)} "
                               f"or a {' or '.join(ARCH_FILE_SUFFIXES)} file")
            nodes = [dict(n, units=self.num_classes) if isinstance(n, dict) and n.get("units") == "classes"
                     else n for n in self.nodes]
            try:
                self._graph = graph.Graph(nodes, self.input_shape)
            except graph.GraphError as e:
                h, w, c = self.input_shape
                raise BadInput(f"{self.name} on {h}x{w}x{c} images: {e}") from None
            self.nodes = self._graph.to_json()
        return self._graph

    @property
    def name(self) -> str:
        return f"model {self.source or self.arch}" if self.arch == zoo.CUSTOM else f"model {self.arch!r}"

    def __eq__(self, other):
        keys = ("arch", "input_shape", "classes", "scaling", "hidden", "activation", "width")
        return isinstance(other, ModelSpec) and all(getattr(self, k) == getattr(other, k) for k in keys) \
            and self.graph.to_json() == other.graph.to_json()

    def to_json(self) -> dict:
        g = self.graph
        d = {"arch": self.arch, "input_shape": list(self.input_shape), "classes": list(self.classes),
             "scaling": dict(self.scaling)}
        if self.arch == "mlp":
            d.update(hidden=list(self.hidden), activation=self.activation)
        if self.arch == "mobilenet":
            d["width"] = self.width
        if self.source:
            d["source"] = self.source
        d.update(layers=g.describe(), params=g.count_params(), macs=g.macs(), graph=g.to_json())
        return d

    @classmethod
    def from_json(cls, d: dict, imported: bool = False) -> "ModelSpec":
        """A spec from spec.json, every field checked: the file may be hand-edited or damaged.
        Only an imported model (`edgecnn import`) may take a per-channel mean and std."""
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
        try:
            preprocess.check(d.get("scaling"), shape[2], "scaling")
        except BadInput as e:
            bad(str(e))
        if d["scaling"].get("mean") is not None and not imported:  # training divides, and does nothing more
            bad("scaling has a mean and std, which edgecnn's training does not apply")
        extra = {}
        if d["arch"] == "mlp":
            hidden, activation = d.get("hidden"), d.get("activation")
            if not (isinstance(hidden, list) and all(type(v) is int for v in hidden)):
                bad("hidden is not a list of layer sizes")
            if not isinstance(activation, str):
                bad("activation is not a name")
            extra = {"hidden": list(hidden), "activation": activation}
        if d["arch"] == "mobilenet":
            width = d.get("width", 1.0)
            if type(width) not in (int, float):
                bad("width is not a number")
            extra["width"] = float(width)
        nodes = d.get("graph")  # spec.json files from before models as data have none: the zoo's
        if nodes is not None and not isinstance(nodes, list):
            bad("graph is not a list of layers")
        if nodes is None and d["arch"] not in zoo.NAMES:
            bad(f"arch {d['arch'][:40]!r} has no graph")
        source = d.get("source")
        spec = cls(arch=d["arch"], input_shape=tuple(shape), classes=list(classes), scaling=dict(d["scaling"]),
                   nodes=nodes, source=source if isinstance(source, str) else None, **extra)
        check(spec)
        return spec


def from_file(path, input_shape, classes) -> ModelSpec:
    """A user's architecture: a .toml or .json file with a list of layers in the graph
    vocabulary ([[layers]] tables in TOML, {"layers": [...]} in JSON)."""
    spec = ModelSpec(zoo.CUSTOM, input_shape, classes, nodes=read_arch_file(path), source=Path(path).name)
    check(spec)
    return spec


def read_arch_file(path) -> list:
    """The layer list of an architecture file; BadInput if it is not one (its layers are
    checked against an input by ModelSpec.graph)."""
    path = Path(path)
    if path.suffix not in ARCH_FILE_SUFFIXES:
        raise BadInput(f"{path}: an architecture file is .toml or .json")
    if not path.is_file():
        raise BadInput(f"{path}: no such architecture file")
    if path.stat().st_size > MAX_ARCH_FILE:
        raise BadInput(f"{path}: over {MAX_ARCH_FILE >> 20} MB; an architecture file is a short list of layers")
    try:
        text = path.read_text()
        doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BadInput(f"{path}: not valid {path.suffix[1:].upper()} ({' '.join(str(e).split())[:120]})") from None
    if not (isinstance(doc, dict) and isinstance(doc.get("layers"), list)):
        raise BadInput(f"{path}: no list of layers (write [[layers]] tables in TOML, or "
                       f'{{"layers": [...]}} in JSON)')
    unknown = sorted(set(doc) - {"layers", "name"})
    if unknown:
        raise BadInput(f"{path}: unknown key {unknown[0][:40]!r}; an architecture file has layers (and a name)")
    return doc["layers"]


MAX_SIDE = 1024     # the CNNs here are for small images
MAX_CLASSES = 1000


def _check_options(spec: ModelSpec) -> None:
    if spec.arch == "mlp":
        if not (1 <= len(spec.hidden) <= MAX_HIDDEN_LAYERS and all(1 <= u <= MAX_UNITS for u in spec.hidden)):
            raise BadInput(f"model 'mlp' takes 1 to {MAX_HIDDEN_LAYERS} hidden layers of 1 to {MAX_UNITS} units, "
                           f"got {spec.hidden}")
        if spec.activation not in ACTIVATIONS:
            raise BadInput(f"unknown activation {str(spec.activation)[:40]!r}; choose one of {', '.join(ACTIVATIONS)}")
    if not (type(spec.width) in (int, float) and 0 < spec.width <= MAX_WIDTH):
        raise BadInput(f"--width must be a number above 0 and at most {MAX_WIDTH:g}, got {spec.width}")


def check(spec: ModelSpec) -> None:
    h, w, c = spec.input_shape
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise BadInput(f"{spec.name} takes images up to {MAX_SIDE}x{MAX_SIDE}, got {h}x{w}")
    if c not in (1, 3):
        raise BadInput(f"{spec.name} takes 1 or 3 channels, got {c}")
    if not 2 <= len(spec.classes) <= MAX_CLASSES:
        raise BadInput(f"{spec.name} needs 2 to {MAX_CLASSES} classes, got {len(spec.classes)}")
    g = spec.graph
    if g.output_shape != (spec.num_classes,):
        last = g.nodes[-1]["name"]
        raise BadInput(f"{spec.name}: layer {last!r} outputs {'x'.join(map(str, g.output_shape))}, not one logit "
                       f"per class ({spec.num_classes}); end with a dense layer of units = \"classes\"")
    params, macs = g.count_params(), g.macs()
    if params > MAX_PARAMS:
        raise BadInput(f"{spec.name} on {h}x{w}x{c} images would have {params:,} parameters; "
                       f"edgecnn's limit for an edge model is {MAX_PARAMS:,}")
    if macs > MAX_MACS:
        raise BadInput(f"{spec.name} on {h}x{w}x{c} images would take {macs:,} multiply-accumulates per image; "
                       f"edgecnn's limit for an edge model is {MAX_MACS:,}")


def numpy_only(spec: ModelSpec) -> bool:
    """Whether only the NumPy framework has every op of the spec (binary_logits)."""
    return any(n["op"] == "binary_logits" for n in spec.graph.nodes)


def _refuse_numpy_only(spec: ModelSpec) -> None:
    if numpy_only(spec):
        from edgecnn.converters import made_from
        raise BadInput(f"the {spec.arch} spec exists only in NumPy: train it with --framework numpy "
                       f"and export it with --formats {','.join(made_from('numpy'))}")


def build_numpy(spec: ModelSpec, seed: int = 0, dtype=np.float32):
    """The NumPy network of the spec's graph, initialised as PyTorch initialises its
    layers by default: conv and dense weights and biases uniform in +-1/sqrt(fan_in);
    BN scale 1, shift 0, moving mean 0 and variance 1."""
    check(spec)
    g = spec.graph
    rng = np.random.default_rng(seed)
    params = {}
    for node in g.nodes:
        shapes = g.params_of(node)
        fan_in = math.prod(shapes["kernel"][:-1]) if "kernel" in shapes else 1
        for k, shape in shapes.items():
            key = f"{node['name']}.{k}"
            if k in ("kernel", "bias"):
                bound = 1 / math.sqrt(fan_in)
                params[key] = rng.uniform(-bound, bound, shape).astype(dtype)
            else:
                params[key] = np.full(shape, 1.0 if k in ("gamma", "moving_variance") else 0.0, dtype)
    return npnet.Net(g, params, seed=seed)


def build_torch(spec: ModelSpec):
    from . import torch_net
    check(spec)
    _refuse_numpy_only(spec)
    try:
        return torch_net.build(spec.graph)
    except ValueError as e:
        raise BadInput(f"{spec.name}: {e}") from None


def build_keras(spec: ModelSpec):
    from . import keras_net
    check(spec)
    _refuse_numpy_only(spec)
    try:
        return keras_net.build(spec.graph, spec.arch)
    except ValueError as e:
        raise BadInput(f"{spec.name}: {e}") from None


def count_params_torch(model) -> int:
    from .torch_net import count_params
    return count_params(model)

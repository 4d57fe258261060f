"""A CNN as data: the vocabulary of ops, and a graph of named nodes over it.

Each op is defined once, here: its attributes and their defaults, how it infers its
output shape, its parameters in their canonical layout (NHWC; conv kernels (kh, kw,
in / groups, out), dense kernels (in, out), which are Keras's layouts), and its MACs
(multiply-accumulates per image; counted for conv2d and dense, the ops that dominate).
Everything else is derived from a graph of these nodes: the PyTorch, Keras and NumPy
builders, the weight bridge, the .ptl fusion patterns, `describe`, parameter and MAC
counts, and the checks of a loaded NumPy file.

A node is a dict: {"op": ..., "name": ..., "inputs": [...], **attributes}. "inputs"
defaults to the node before it (the graph's input, named "input", for the first); only
`add` takes two. Shapes are per image: (H, W, C) for feature maps, (N,) for vectors.

Pure Python on purpose: the NumPy runtime checks files with it, on a device that has
nothing but NumPy.
"""
from __future__ import annotations

import math
import re

INPUT = "input"
MAX_KERNEL, MAX_STRIDE, MAX_NODES = 15, 8, 512
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
REQUIRED = object()


class GraphError(ValueError):
    """The graph does not describe a network; the message names the layer and the problem."""


def _int(lo, hi):
    def check(v):
        return type(v) is int and lo <= v <= hi
    check.what = f"a whole number from {lo} to {hi}"
    return check


def _bool(v):
    return type(v) is bool


_bool.what = "true or false"


def _rate(v):
    return type(v) in (int, float) and 0 <= v < 1


_rate.what = "a number from 0 up to (not including) 1"


def _eps(v):
    return type(v) in (int, float) and 0 < v < 1


_eps.what = "a number between 0 and 1"


def _padding(v):
    return v in ("same", "valid") or (type(v) is int and 0 <= v < MAX_KERNEL)


_padding.what = f'"same", "valid" or a whole number of pixels below {MAX_KERNEL}'


class Op:
    """One op of the vocabulary. Subclasses set `kind`, `attrs` ({name: (check, default)})
    and the methods they need; the defaults fit an op without parameters that keeps its
    input's shape."""
    kind = ""
    attrs: dict = {}
    arity = 1
    ranks = (1, 3)  # the input ranks it takes

    def out_shape(self, a: dict, shapes: list[tuple]) -> tuple:
        return shapes[0]

    def param_shapes(self, a: dict, shapes: list[tuple]) -> dict[str, tuple]:
        return {}

    def trainable(self, a: dict) -> tuple[str, ...]:
        """The parameters that gradients update (BN's moving statistics are not)."""
        return ()

    def macs(self, a: dict, shapes: list[tuple], out: tuple) -> int:
        return 0

    def describe(self, a: dict) -> str:
        return self.kind


def padding_of(a: dict) -> int:
    """A conv2d's padding in pixels on every side: "same" is kernel // 2 on each side
    (symmetric, as PyTorch pads; Keras's own "same" pads (0, 1) at stride 2)."""
    p = a["padding"]
    return a["kernel"] // 2 if p == "same" else 0 if p == "valid" else p


def window_out(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def is_depthwise(a: dict, in_channels: int) -> bool:
    return a["groups"] > 1 and a["groups"] == in_channels


class Conv2D(Op):
    kind = "conv2d"
    attrs = {"filters": (_int(1, 65536), REQUIRED), "kernel": (_int(1, MAX_KERNEL), 3),
             "stride": (_int(1, MAX_STRIDE), 1), "padding": (_padding, "same"),
             "groups": (_int(1, 65536), 1), "bias": (_bool, True)}
    ranks = (3,)

    def out_shape(self, a, shapes):
        h, w, c = shapes[0]
        k, s, g = a["kernel"], a["stride"], a["groups"]
        if a["padding"] == "same" and k % 2 == 0:
            raise GraphError(f'padding "same" needs an odd kernel, not {k}')
        if g != 1 and not (g == c and a["filters"] == c):
            raise GraphError(f"groups must be 1, or the input channels ({c}) with filters = {c} "
                             f"(depthwise); got groups {g} and filters {a['filters']}")
        p = padding_of(a)
        if p >= k:
            raise GraphError(f"padding {p} is not smaller than the kernel {k}")
        oh, ow = window_out(h, k, s, p), window_out(w, k, s, p)
        if oh < 1 or ow < 1:
            raise GraphError(f"a {k}x{k} kernel does not fit a {h}x{w} input with padding {p}")
        return (oh, ow, a["filters"])

    def param_shapes(self, a, shapes):
        k, c = a["kernel"], shapes[0][-1]
        out = {"kernel": (k, k, c // a["groups"], a["filters"])}
        if a["bias"]:
            out["bias"] = (a["filters"],)
        return out

    def trainable(self, a):
        return ("kernel", "bias") if a["bias"] else ("kernel",)

    def macs(self, a, shapes, out):
        return out[0] * out[1] * out[2] * a["kernel"] ** 2 * (shapes[0][2] // a["groups"])

    def describe(self, a):
        k, s = a["kernel"], a["stride"]
        kind = "dwconv" if a["groups"] > 1 else "conv"
        extra = (f", stride {s}" if s > 1 else "") + ("" if a["bias"] else ", no bias")
        return f"{kind}{k}x{k}({a['filters']}{extra})"


class Dense(Op):
    kind = "dense"
    attrs = {"units": (_int(1, 65536), REQUIRED), "bias": (_bool, True)}
    ranks = (1,)

    def out_shape(self, a, shapes):
        return (a["units"],)

    def param_shapes(self, a, shapes):
        out = {"kernel": (shapes[0][0], a["units"])}
        if a["bias"]:
            out["bias"] = (a["units"],)
        return out

    def trainable(self, a):
        return ("kernel", "bias") if a["bias"] else ("kernel",)

    def macs(self, a, shapes, out):
        return shapes[0][0] * a["units"]

    def describe(self, a):
        return f"dense({a['units']})"


class BatchNorm(Op):
    """Per-channel batch normalisation. One epsilon for every framework (Keras's default
    is 1e-3, PyTorch's 1e-5: the builders set this one in both). `momentum` is PyTorch's
    (the weight of the new batch); Keras's is 1 - momentum."""
    kind = "batchnorm"
    attrs = {"eps": (_eps, 1e-3), "momentum": (_rate, 0.1)}
    ranks = (3,)
    PARAMS = ("gamma", "beta", "moving_mean", "moving_variance")

    def param_shapes(self, a, shapes):
        return {k: (shapes[0][-1],) for k in self.PARAMS}

    def trainable(self, a):
        return ("gamma", "beta")


class Pad(Op):
    """Zero padding of a feature map, each side its own (top, bottom, left, right): what a
    conv's symmetric padding cannot say, such as Keras's "same" at stride 2, which pads
    one more row below and column to the right."""
    kind = "pad"
    attrs = {side: (_int(0, MAX_KERNEL), 0) for side in ("top", "bottom", "left", "right")}
    ranks = (3,)

    def out_shape(self, a, shapes):
        h, w, c = shapes[0]
        return (h + a["top"] + a["bottom"], w + a["left"] + a["right"], c)

    def describe(self, a):
        return f"pad({a['top']}, {a['bottom']}, {a['left']}, {a['right']})"


class Pool(Op):
    """maxpool and avgpool: the same windows, a different reduction (npnet's business)."""
    attrs = {"size": (_int(1, 64), 2), "stride": (_int(0, 64), 0)}  # stride 0: the size
    ranks = (3,)

    def __init__(self, kind: str):
        self.kind = kind

    def out_shape(self, a, shapes):
        h, w, c = shapes[0]
        k, s = a["size"], stride_of(a)
        if h < k or w < k:
            raise GraphError(f"a {k}x{k} window needs an input of at least {k}x{k}, gets {h}x{w}")
        return (window_out(h, k, s), window_out(w, k, s), c)

    def describe(self, a):
        s = stride_of(a)
        return f"{self.kind}{a['size']}" + (f"(stride {s})" if s != a["size"] else "")


def stride_of(a: dict) -> int:
    return a["stride"] or a["size"]


class GlobalAvgPool(Op):
    kind = "gap"
    ranks = (3,)

    def out_shape(self, a, shapes):
        return (shapes[0][2],)


class Add(Op):
    kind = "add"
    arity = 2

    def out_shape(self, a, shapes):
        if shapes[0] != shapes[1]:
            raise GraphError(f"adds mismatched shapes {_fmt(shapes[0])} and {_fmt(shapes[1])}")
        return shapes[0]


class Flatten(Op):
    """(H, W, C) to (H*W*C,), in NHWC order."""
    kind = "flatten"

    def out_shape(self, a, shapes):
        return (math.prod(shapes[0]),)


class Dropout(Op):
    kind = "dropout"
    attrs = {"rate": (_rate, 0.5)}

    def describe(self, a):
        return f"dropout({a['rate']:g})"


class Activation(Op):
    """relu, relu6 and sigmoid: value by value, the shape kept."""

    def __init__(self, kind: str):
        self.kind = kind


class BinaryLogits(Op):
    """One unit z to the logits [0, z] (the NumPy mlp's two-class head)."""
    kind = "binary_logits"
    ranks = (1,)

    def out_shape(self, a, shapes):
        if shapes[0] != (1,):
            raise GraphError(f"takes one unit, gets {_fmt(shapes[0])}")
        return (2,)


OPS = {op.kind: op for op in (Conv2D(), Pad(), BatchNorm(), Activation("relu"), Activation("relu6"), Activation("sigmoid"),
                              Pool("maxpool"), Pool("avgpool"), GlobalAvgPool(), Add(), Dense(), Dropout(),
                              Flatten(), BinaryLogits())}


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)


class Graph:
    """Checked nodes with their shapes. Build it with Graph(nodes, input_shape); a bad
    graph raises GraphError naming the layer."""

    def __init__(self, nodes: list, input_shape):
        if not isinstance(nodes, list) or not nodes:
            raise GraphError("the model has no layers")
        if len(nodes) > MAX_NODES:
            raise GraphError(f"the model has {len(nodes)} layers; the limit is {MAX_NODES}")
        self.input_shape = tuple(input_shape)
        self.nodes: list[dict] = []
        self.shapes: dict[str, tuple] = {INPUT: self.input_shape}
        self.in_shapes: dict[str, list[tuple]] = {}
        prev = INPUT
        for i, raw in enumerate(nodes):
            node = self._normalise(raw, i, prev)
            self._infer(node)
            self.nodes.append(node)
            prev = node["name"]
        self.output = prev
        unused = [n["name"] for n in self.nodes[:-1] if not self.consumers(n["name"])]
        if unused:
            raise GraphError(f"layer {unused[0]!r}: its output is never used")

    def _normalise(self, raw, i: int, prev: str) -> dict:
        where = f"layer {i + 1}"
        if not isinstance(raw, dict):
            raise GraphError(f"{where}: is not a table of op and attributes")
        kind = raw.get("op")
        name = raw.get("name", f"{kind}{i + 1}")
        if isinstance(name, str) and NAME.match(name):
            where = f"layer {name!r}"
        op = OPS.get(kind) if isinstance(kind, str) else None
        if op is None:
            raise GraphError(f"{where}: unknown op {str(kind)[:40]!r}; the ops are {', '.join(OPS)}")
        if not (isinstance(name, str) and NAME.match(name)):
            raise GraphError(f"{where}: name {str(name)[:40]!r} is not a name (letters, digits, _)")
        if name in self.shapes:
            raise GraphError(f"{where}: the name is used twice")
        node = {"op": kind, "name": name}
        for key, (check, default) in op.attrs.items():
            value = raw.get(key, default)
            if value is REQUIRED:
                raise GraphError(f"{where}: {kind} needs {key!r}")
            if not check(value):
                raise GraphError(f"{where}: {key} must be {check.what}, not {str(value)[:40]!r}")
            node[key] = value
        unknown = sorted(set(raw) - set(op.attrs) - {"op", "name", "inputs"})
        if unknown:
            raise GraphError(f"{where}: {kind} has no attribute {unknown[0][:40]!r}")
        inputs = raw.get("inputs", [prev] if op.arity == 1 else None)
        if isinstance(inputs, str):
            inputs = [inputs]
        if not (isinstance(inputs, list) and len(inputs) == op.arity and all(isinstance(s, str) for s in inputs)):
            raise GraphError(f"{where}: {kind} takes {op.arity} input{'s' if op.arity > 1 else ''}"
                             + (" (inputs = [two layer names])" if op.arity > 1 else ""))
        for s in inputs:
            if s not in self.shapes:
                raise GraphError(f"{where}: input {s[:40]!r} is not an earlier layer")
        node["inputs"] = list(inputs)
        return node

    def _infer(self, node: dict) -> None:
        op = OPS[node["op"]]
        shapes = [self.shapes[s] for s in node["inputs"]]
        where = f"layer {node['name']!r}: {node['op']}"
        for s in shapes:
            if len(s) not in op.ranks:
                want = "a feature map (H, W, C)" if op.ranks == (3,) else "a vector (flatten or gap first)"
                raise GraphError(f"{where} takes {want}, gets {_fmt(s)}")
        try:
            out = op.out_shape(node, shapes)
        except GraphError as e:
            raise GraphError(f"{where}: {e}") from None
        self.in_shapes[node["name"]] = shapes
        self.shapes[node["name"]] = tuple(out)

    # ----- what the rest of edgecnn derives from the graph
    @property
    def output_shape(self) -> tuple:
        return self.shapes[self.output]

    def op(self, node: dict) -> Op:
        return OPS[node["op"]]

    def consumers(self, name: str) -> list[dict]:
        return [n for n in self.nodes if name in n["inputs"]]

    def params_of(self, node: dict) -> dict[str, tuple]:
        return self.op(node).param_shapes(node, self.in_shapes[node["name"]])

    def param_shapes(self) -> dict[str, tuple]:
        """Every parameter, "layer.param" -> canonical shape, in graph order."""
        return {f"{n['name']}.{k}": s for n in self.nodes for k, s in self.params_of(n).items()}

    def count_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    def macs(self) -> int:
        return sum(self.op(n).macs(n, self.in_shapes[n["name"]], self.shapes[n["name"]]) for n in self.nodes)

    def weighted_layers(self) -> list[str]:
        """The layers whose weights int8 quantizes (conv2d and dense), in graph order."""
        return [n["name"] for n in self.nodes if n["op"] in ("conv2d", "dense")]

    def folded_chain(self, name: str) -> list[str]:
        """The layer and what every converter folds into it: the batchnorm, then the
        relu or relu6, that follow it as the only reader of the output before."""
        chain = [name]
        for kinds in (("batchnorm",), ("relu", "relu6")):
            readers = self.consumers(chain[-1])
            if len(readers) == 1 and readers[0]["op"] in kinds:
                chain.append(readers[0]["name"])
        return chain

    def describe(self) -> list[str]:
        out = []
        for n in self.nodes:
            text = self.op(n).describe(n)
            if n["op"] == "add":
                text = f"add({', '.join(n['inputs'])})"
            out.append(text)
        return out

    def to_json(self) -> list[dict]:
        return [dict(n) for n in self.nodes]

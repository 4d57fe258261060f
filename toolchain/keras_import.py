"""A user's Keras model, read as edgecnn's graph vocabulary (runtime/graph.py).

`to_nodes(model)` walks a Sequential or functional Keras model and returns graph nodes
named after its layers, or raises NotVocabulary naming the first layer the graph
cannot express. `copy_weights` then fills the graph's own Keras twin
(toolchain/keras_net.py) with the model's weights: the twin's layers are named as the
nodes, and each holds its weights in the same Keras layout.

What maps, and how:
- Conv2D and DepthwiseConv2D (depth multiplier 1) with square kernels and strides, no
  dilation: "valid" is padding 0; "same" is the conv's own symmetric padding when it
  pads as many rows above as below, and otherwise (at stride 2 on an even input Keras
  pads one row more below and one column more to the right) a pad layer before it.
- ZeroPadding2D is a pad layer.
- An activation inside a layer (Conv2D(activation="relu")) becomes a layer of its own.
- A softmax at the output is dropped: edgecnn's artifacts output logits (top-1 is the
  same), and the proof of the import applies softmax to the twin's output first.
"""
from __future__ import annotations

from edgecnn.runtime import graph as g

from .vocabulary import NotVocabulary, node_name, square

SOFTMAX = "softmax"
ACTIVATIONS = {"relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "linear": None}


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras's "same" on one axis: (before, after), so that the output is
    ceil(size / stride); an odd extra goes after (below, to the right)."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _inputs(layer, names: dict) -> list[str]:
    node = layer._inbound_nodes[0]
    return [names[t._keras_history[0].name] for t in node.input_tensors]


def to_nodes(model, reserved=frozenset()) -> tuple[list[dict], dict[str, str], bool]:
    """(graph nodes, {node name: the Keras layer whose weights it takes}, whether a final
    softmax was dropped). No node takes a name in `reserved`."""
    import keras
    if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
        raise NotVocabulary("it is not a Sequential or functional Keras model (a subclassed one has no graph)")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise NotVocabulary(f"it has {len(model.inputs)} inputs and {len(model.outputs)} outputs, not one of each")
    names = {model.inputs[0]._keras_history[0].name: g.INPUT}
    taken: set = set()
    nodes: list[dict] = []
    out_layer = model.outputs[0]._keras_history[0]
    dropped_softmax = False
    sources: dict[str, str] = {}

    def add(node: dict, layer_name: str, inputs: list[str]) -> str:
        node["name"] = node_name(layer_name, taken, reserved)
        node["inputs"] = inputs
        nodes.append(node)
        return node["name"]

    def activation(fn, layer, src: str) -> str:
        kind = getattr(fn, "__name__", str(fn))
        if kind == SOFTMAX and layer is out_layer:
            nonlocal dropped_softmax
            dropped_softmax = True
            return src
        if kind not in ACTIVATIONS:
            raise NotVocabulary(f"layer {layer.name!r}: activation {kind!r} is not in edgecnn's graph "
                                f"(relu, relu6, sigmoid)")
        if ACTIVATIONS[kind] is None:
            return src
        return add({"op": ACTIVATIONS[kind]}, f"{layer.name}_{kind}", [src])

    # A Sequential model is a chain (Keras calls its layers more than once to build it);
    # a functional model's layers each have the one call that made the model.
    chain = isinstance(model, keras.Sequential)
    previous = model.inputs[0]._keras_history[0].name
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if chain:
            ins = [names[previous]]
        elif len(layer._inbound_nodes) != 1:
            raise NotVocabulary(f"layer {layer.name!r} is used {len(layer._inbound_nodes)} times")
        else:
            ins = _inputs(layer, names)
        previous = layer.name
        cfg = layer.get_config()
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise NotVocabulary(f"layer {layer.name!r}: data_format {cfg['data_format']!r} (channels_last only)")
        if isinstance(layer.input, (list, tuple)) and kind != "Add":
            raise NotVocabulary(f"layer {layer.name!r} is a {kind} of several inputs, which is not in "
                                f"edgecnn's graph")
        in_shape = tuple(layer.input.shape[1:]) if kind != "Add" else None
        if kind in ("Conv2D", "DepthwiseConv2D"):
            where = f"layer {layer.name!r}"
            k, s = square(cfg["kernel_size"], "kernel", where), square(cfg["strides"], "stride", where)
            if square(cfg.get("dilation_rate", 1), "dilation", where) != 1:
                raise NotVocabulary(f"layer {layer.name!r}: dilated convolutions are not in edgecnn's graph")
            src, padding = ins[0], 0
            if cfg["padding"] == "same":
                (top, bottom), (left, right) = (_same_padding(int(d), k, s) for d in in_shape[:2])
                if top == bottom == left == right:
                    padding = top
                else:
                    src = add({"op": "pad", "top": top, "bottom": bottom, "left": left, "right": right},
                              f"{layer.name}_same", [src])
            channels = int(in_shape[-1])
            if kind == "DepthwiseConv2D":
                if cfg.get("depth_multiplier", 1) != 1:
                    raise NotVocabulary(f"layer {layer.name!r}: depth_multiplier {cfg['depth_multiplier']} "
                                        f"(1 only)")
                filters, groups = channels, channels
            else:
                filters, groups = int(cfg["filters"]), int(cfg.get("groups", 1))
                if groups != 1:
                    raise NotVocabulary(f"layer {layer.name!r}: grouped convolution (groups {groups})")
            node = {"op": "conv2d", "filters": filters, "kernel": k, "stride": s, "padding": padding,
                    "groups": groups, "bias": bool(cfg["use_bias"])}
            out = add(node, layer.name, [src])
            sources[out] = layer.name
            out = activation(layer.activation, layer, out)
        elif kind == "ZeroPadding2D":
            (top, bottom), (left, right) = cfg["padding"]
            out = add({"op": "pad", "top": int(top), "bottom": int(bottom), "left": int(left), "right": int(right)},
                      layer.name, ins)
        elif kind == "BatchNormalization":
            axis = cfg["axis"] if isinstance(cfg["axis"], int) else cfg["axis"][0]
            if axis not in (-1, len(in_shape)) or not (cfg["center"] and cfg["scale"]) or len(in_shape) != 3:
                raise NotVocabulary(f"layer {layer.name!r}: BatchNormalization over the channels of a "
                                    f"feature map, with center and scale, is what the graph has")
            out = add({"op": "batchnorm", "eps": float(cfg["epsilon"]), "momentum": 1 - float(cfg["momentum"])},
                      layer.name, ins)
            sources[out] = layer.name
        elif kind == "ReLU":
            if cfg.get("negative_slope", 0) or cfg.get("threshold", 0) or cfg.get("max_value") not in (None, 6):
                raise NotVocabulary(f"layer {layer.name!r}: ReLU with a slope, threshold or cap other than 6")
            out = add({"op": "relu" if cfg.get("max_value") is None else "relu6"}, layer.name, ins)
        elif kind == "Activation":
            out = activation(layer.activation, layer, ins[0])
        elif kind == "Softmax":
            out = activation(type("softmax", (), {"__name__": SOFTMAX}), layer, ins[0])
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            where = f"layer {layer.name!r}"
            size, s = square(cfg["pool_size"], "pool size", where), square(cfg["strides"], "stride", where)
            if cfg["padding"] != "valid":
                raise NotVocabulary(f"layer {layer.name!r}: pooling with padding \"same\"")
            out = add({"op": "maxpool" if kind == "MaxPooling2D" else "avgpool", "size": size, "stride": s},
                      layer.name, ins)
        elif kind == "GlobalAveragePooling2D":
            if cfg.get("keepdims"):
                raise NotVocabulary(f"layer {layer.name!r}: global pooling with keepdims")
            out = add({"op": "gap"}, layer.name, ins)
        elif kind == "Add":
            if len(ins) != 2:
                raise NotVocabulary(f"layer {layer.name!r}: adds {len(ins)} tensors (two only)")
            out = add({"op": "add"}, layer.name, ins)
        elif kind == "Dense":
            out = add({"op": "dense", "units": int(cfg["units"]), "bias": bool(cfg["use_bias"])}, layer.name, ins)
            sources[out] = layer.name
            out = activation(layer.activation, layer, out)
        elif kind == "Dropout":
            out = add({"op": "dropout", "rate": float(cfg["rate"])}, layer.name, ins)
        elif kind == "Flatten":
            out = add({"op": "flatten"}, layer.name, ins)
        else:
            raise NotVocabulary(f"layer {layer.name!r} is a {kind}, which is not in edgecnn's graph")
        names[layer.name] = out
    return nodes, sources, dropped_softmax


def copy_weights(model, twin, sources: dict[str, str]) -> None:
    """The model's weights into the graph's Keras twin, layer by layer (same layouts)."""
    for node, layer in sources.items():
        twin.get_layer(node).set_weights(model.get_layer(layer).get_weights())

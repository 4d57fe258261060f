"""The weight bridge: copies the weights of one twin into another, exactly, and proves
it on real inputs before anything is written.

The twins are the PyTorch module, the Keras model and the NumPy network
(edgecnn.runtime.npnet), all built from one graph (runtime/graph.py). Every copy goes
through one canonical form, a dict of arrays named "layer.param" in the layouts the
graph defines (the NumPy network's, which are Keras's), so each twin needs only a
reader and a writer here, and what to move is read from the graph:
- conv kernels: PyTorch (out, in / groups, kh, kw), canonical (kh, kw, in / groups, out);
  a depthwise kernel is canonical (kh, kw, 1, C), Keras's DepthwiseConv2D (kh, kw, C, 1);
- dense kernels: PyTorch (out, in), canonical (in, out);
- a dense layer fed by a flatten of a feature map: PyTorch flattens (C, H, W), the others
  (H, W, C), so its input rows are permuted with that map's shape;
- batchnorm: gamma, beta and the moving mean and variance, which PyTorch keeps as
  buffers (weight, bias, running_mean, running_var) and not as parameters.
"""
from __future__ import annotations

import numpy as np

from edgecnn.runtime import graph as g
from edgecnn.runtime.evaluate import nchw

TOLERANCE = 1e-4
ELEMENTWISE = ("dropout", "relu", "relu6", "sigmoid")  # ops that keep the order of their input's values
TORCH_NAMES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
               "moving_mean": "running_mean", "moving_variance": "running_var"}


class BridgeError(Exception):
    """The twins disagree after the copy: nothing may be exported from them."""


def flattened_map(graph: g.Graph, node: dict):
    """The (H, W, C) map a dense layer's input was flattened from, if PyTorch's (C, H, W)
    order differs from it."""
    src = node["inputs"][0]
    while True:
        producer = next((n for n in graph.nodes if n["name"] == src), None)
        if producer is None or producer["op"] not in ("flatten", *ELEMENTWISE):
            return None
        if producer["op"] == "flatten":
            shape = graph.in_shapes[src][0]
            return shape if len(shape) == 3 and shape[0] * shape[1] > 1 and shape[2] > 1 else None
        src = producer["inputs"][0]


def _rows(kernel_in_out: np.ndarray, hwc, to_torch: bool) -> np.ndarray:
    """Permute a dense kernel's input rows between (H, W, C) and (C, H, W) order."""
    h, w, c = hwc
    units = kernel_in_out.shape[1]
    if to_torch:
        return kernel_in_out.reshape(h, w, c, units).transpose(2, 0, 1, 3).reshape(-1, units)
    return kernel_in_out.reshape(c, h, w, units).transpose(1, 2, 0, 3).reshape(-1, units)


def _torch_layout(graph, node, k, a, to_torch: bool) -> np.ndarray:
    if k != "kernel":
        return a
    if node["op"] == "conv2d":
        return a.transpose(3, 2, 0, 1) if to_torch else a.transpose(2, 3, 1, 0)
    hwc = flattened_map(graph, node)
    if to_torch:
        return (_rows(a, hwc, True) if hwc else a).T
    return _rows(a.T, hwc, False) if hwc else a.T


def torch_layout(graph: g.Graph, node: dict, kernel: np.ndarray) -> np.ndarray:
    """A canonical conv or dense kernel in PyTorch's layout."""
    return _torch_layout(graph, node, "kernel", kernel, to_torch=True)


def _keras_weights(graph, node, layer_weights: list, to_keras: dict | None = None):
    """A Keras layer's weight list <-> canonical arrays, in Keras's order (kernel, bias;
    gamma, beta, moving mean, moving variance)."""
    names = list(graph.params_of(node))
    depthwise = node["op"] == "conv2d" and g.is_depthwise(node, graph.in_shapes[node["name"]][0][2])
    if to_keras is None:
        out = dict(zip(names, layer_weights))
        if depthwise:
            out["kernel"] = out["kernel"].transpose(0, 1, 3, 2)
        return out
    return [to_keras[k].transpose(0, 1, 3, 2) if depthwise and k == "kernel" else to_keras[k] for k in names]


def arrays_of(kind: str, model, graph: g.Graph, grads: bool = False) -> dict[str, np.ndarray]:
    """A twin's weights (or, for torch and numpy, its trainable parameters' gradients) in
    canonical form."""
    if kind == "numpy":
        return {k: np.array(v) for k, v in (model.grads if grads else model.params).items()}
    out = {}
    if kind == "keras":
        for node in graph.nodes:
            if graph.params_of(node):
                for k, v in _keras_weights(graph, node, model.get_layer(node["name"]).get_weights()).items():
                    out[f"{node['name']}.{k}"] = v
        return out
    sd = ({k: p.grad for k, p in model.named_parameters()} if grads else dict(model.state_dict()))
    for node in graph.nodes:
        for k in graph.params_of(node):
            if grads and k not in g.OPS[node["op"]].trainable(node):
                continue
            a = sd[f"{node['name']}.{TORCH_NAMES[k]}"].detach().cpu().numpy()
            out[f"{node['name']}.{k}"] = np.ascontiguousarray(_torch_layout(graph, node, k, a, to_torch=False))
    return out


def load_into(kind: str, model, arrays: dict[str, np.ndarray], graph: g.Graph) -> None:
    """Set a twin's weights from canonical arrays."""
    if kind == "numpy":
        model.set_params(arrays)
    elif kind == "keras":
        for node in graph.nodes:
            if graph.params_of(node):
                model.get_layer(node["name"]).set_weights(
                    _keras_weights(graph, node, [], {k: arrays[f"{node['name']}.{k}"] for k in graph.params_of(node)}))
    else:
        import torch
        state = {}
        for node in graph.nodes:
            for k in graph.params_of(node):
                a = _torch_layout(graph, node, k, arrays[f"{node['name']}.{k}"], to_torch=True)
                state[f"{node['name']}.{TORCH_NAMES[k]}"] = np.ascontiguousarray(a)
        dtype = next(model.parameters()).dtype
        missing, unexpected = model.load_state_dict(
            {k: torch.from_numpy(v).to(dtype) for k, v in state.items()}, strict=False)
        missing = [m for m in missing if not m.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise BridgeError(f"the torch twin does not fit the graph: missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}")


def copy_weights(src_kind: str, src, dst_kind: str, dst, graph: g.Graph) -> None:
    load_into(dst_kind, dst, arrays_of(src_kind, src, graph), graph)


def torch_logits(torch_model, x_nhwc: np.ndarray, batch: int = 1000) -> np.ndarray:
    import torch
    torch_model.eval()
    with torch.inference_mode():
        return np.concatenate([
            torch_model(torch.from_numpy(nchw(x_nhwc[i:i + batch]))).numpy()
            for i in range(0, len(x_nhwc), batch)])


def keras_logits(keras_model, x_nhwc: np.ndarray, batch: int = 1000) -> np.ndarray:
    return np.concatenate([np.asarray(keras_model(x_nhwc[i:i + batch], training=False))
                           for i in range(0, len(x_nhwc), batch)])


def numpy_logits(net, x_nhwc: np.ndarray, batch: int = 500) -> np.ndarray:
    return np.concatenate([net.forward(x_nhwc[i:i + batch]) for i in range(0, len(x_nhwc), batch)])


def logits(kind: str, model, x_nhwc: np.ndarray) -> np.ndarray:
    return {"torch": torch_logits, "keras": keras_logits, "numpy": numpy_logits}[kind](model, x_nhwc)


def prove(src_kind: str, src, dst_kind: str, dst, x_nhwc: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """Max abs logit difference between two twins on real images; raises past tolerance."""
    diff = float(np.max(np.abs(logits(src_kind, src, x_nhwc) - logits(dst_kind, dst, x_nhwc))))
    if not diff <= tolerance:
        raise BridgeError(f"the {src_kind} and {dst_kind} twins disagree after the weight copy: max abs "
                          f"logit difference {diff:.3g} on {len(x_nhwc)} test images "
                          f"(allowed {tolerance:g})")
    return diff

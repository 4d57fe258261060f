"""The weight bridge: copies the weights of one twin into the other, exactly, and proves
it on real inputs before anything is written.

Layout differences handled here:
- conv kernels: PyTorch (out, in, kh, kw), Keras (kh, kw, in, out);
- dense kernels: PyTorch (out, in), Keras (in, out);
- the first dense layer after Flatten: PyTorch flattens (C, H, W), Keras (H, W, C),
  so its input rows are permuted.

The twins are built by the caller (edgecnn.toolchain.models); this module only moves
arrays, so it depends on no model definition.
"""
from __future__ import annotations

import numpy as np

TOLERANCE = 1e-4
CONVS = ("conv1", "conv2")
DENSES = ("fc1", "fc2")


class BridgeError(Exception):
    """The twins disagree after the copy: nothing may be exported from them."""


def _flatten_shape(keras_model) -> tuple[int, int, int]:
    return tuple(int(d) for d in keras_model.get_layer("flatten").input.shape[1:])


def torch_to_keras(torch_model, keras_model) -> None:
    sd = {k: v.detach().cpu().numpy() for k, v in torch_model.state_dict().items()}
    for name in CONVS:
        keras_model.get_layer(name).set_weights(
            [sd[f"{name}.weight"].transpose(2, 3, 1, 0), sd[f"{name}.bias"]])
    h, w, c = _flatten_shape(keras_model)
    fc1 = sd["fc1.weight"]  # (out, C*H*W)
    fc1 = fc1.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(fc1.shape[0], -1)
    keras_model.get_layer("fc1").set_weights([fc1.T, sd["fc1.bias"]])
    keras_model.get_layer("fc2").set_weights([sd["fc2.weight"].T, sd["fc2.bias"]])


def keras_to_torch(keras_model, torch_model) -> None:
    import torch
    state = {}
    for name in CONVS:
        kernel, bias = keras_model.get_layer(name).get_weights()
        state[f"{name}.weight"] = kernel.transpose(3, 2, 0, 1)
        state[f"{name}.bias"] = bias
    h, w, c = _flatten_shape(keras_model)
    kernel, bias = keras_model.get_layer("fc1").get_weights()  # (H*W*C, out)
    fc1 = kernel.T.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(kernel.shape[1], -1)
    state["fc1.weight"], state["fc1.bias"] = fc1, bias
    kernel, bias = keras_model.get_layer("fc2").get_weights()
    state["fc2.weight"], state["fc2.bias"] = kernel.T, bias
    torch_model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})


def torch_logits(torch_model, x_nhwc: np.ndarray) -> np.ndarray:
    import torch
    torch_model.eval()
    with torch.inference_mode():
        return torch_model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))).numpy()


def keras_logits(keras_model, x_nhwc: np.ndarray, batch: int = 1000) -> np.ndarray:
    return np.concatenate([np.asarray(keras_model(x_nhwc[i:i + batch], training=False))
                           for i in range(0, len(x_nhwc), batch)])


def prove(torch_model, keras_model, x_nhwc: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """Max abs logit difference between the twins on real images; raises past tolerance."""
    diff = float(np.max(np.abs(torch_logits(torch_model, x_nhwc) - keras_logits(keras_model, x_nhwc))))
    if not diff <= tolerance:
        raise BridgeError(f"the PyTorch and Keras twins disagree after the weight copy: max abs "
                          f"logit difference {diff:.3g} on {len(x_nhwc)} test images "
                          f"(allowed {tolerance:g})")
    return diff

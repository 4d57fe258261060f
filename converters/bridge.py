"""The weight bridge: copies the weights of one twin into another, exactly, and proves
it on real inputs before anything is written.

The twins are the PyTorch module, the Keras model and the NumPy network
(edgecnn.runtime.npnet). Every copy goes through one canonical form, a dict of arrays
named "conv1.kernel", "conv1.bias", ..., "fc2.bias" in the NumPy network's layout
(which is also Keras's), so each twin needs only a reader and a writer here:
- conv kernels: PyTorch (out, in, kh, kw), canonical (kh, kw, in, out);
- dense kernels: PyTorch (out, in), canonical (in, out);
- the first dense layer after Flatten: PyTorch flattens (C, H, W), the others (H, W, C),
  so its input rows are permuted with the flatten shape.

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


def _fc1_rows(kernel_in_out: np.ndarray, flat_hwc, to_torch: bool) -> np.ndarray:
    """Permute the first dense kernel's input rows between (H, W, C) and (C, H, W) order."""
    h, w, c = flat_hwc
    units = kernel_in_out.shape[1]
    if to_torch:
        return kernel_in_out.reshape(h, w, c, units).transpose(2, 0, 1, 3).reshape(-1, units)
    return kernel_in_out.reshape(c, h, w, units).transpose(1, 2, 0, 3).reshape(-1, units)


def arrays_of(kind: str, model, flat_hwc, grads: bool = False) -> dict[str, np.ndarray]:
    """A twin's weights (or, for torch and numpy, its gradients) in canonical form."""
    if kind == "numpy":
        return {k: np.array(v) for k, v in (model.grads if grads else model.params).items()}
    if kind == "keras":
        out = {}
        for name in CONVS + DENSES:
            out[f"{name}.kernel"], out[f"{name}.bias"] = model.get_layer(name).get_weights()
        return out
    sd = {k: (p.grad if grads else p).detach().cpu().numpy() for k, p in model.named_parameters()}
    out = {}
    for name in CONVS:
        out[f"{name}.kernel"], out[f"{name}.bias"] = sd[f"{name}.weight"].transpose(2, 3, 1, 0), sd[f"{name}.bias"]
    for name in DENSES:
        out[f"{name}.kernel"], out[f"{name}.bias"] = sd[f"{name}.weight"].T, sd[f"{name}.bias"]
    out["fc1.kernel"] = _fc1_rows(out["fc1.kernel"], flat_hwc, to_torch=False)
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def load_into(kind: str, model, arrays: dict[str, np.ndarray], flat_hwc) -> None:
    """Set a twin's weights from canonical arrays."""
    if kind == "numpy":
        model.set_params(arrays)
    elif kind == "keras":
        for name in CONVS + DENSES:
            model.get_layer(name).set_weights([arrays[f"{name}.kernel"], arrays[f"{name}.bias"]])
    else:
        import torch
        state = {}
        for name in CONVS:
            state[f"{name}.weight"] = arrays[f"{name}.kernel"].transpose(3, 2, 0, 1)
        state["fc1.weight"] = _fc1_rows(arrays["fc1.kernel"], flat_hwc, to_torch=True).T
        state["fc2.weight"] = arrays["fc2.kernel"].T
        for name in CONVS + DENSES:
            state[f"{name}.bias"] = arrays[f"{name}.bias"]
        dtype = next(model.parameters()).dtype
        model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)).to(dtype) for k, v in state.items()})


def copy_weights(src_kind: str, src, dst_kind: str, dst, flat_hwc) -> None:
    load_into(dst_kind, dst, arrays_of(src_kind, src, flat_hwc), flat_hwc)


def torch_logits(torch_model, x_nhwc: np.ndarray) -> np.ndarray:
    import torch
    torch_model.eval()
    with torch.inference_mode():
        return torch_model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))).numpy()


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

"""TorchScript Lite (.ptl) from the PyTorch twin: traced, then saved for the lite
interpreter. int8 is eager-mode post-training static quantization with torch.ao:
conv+relu and linear+relu fused, observers calibrated on the calibration images."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

FORMAT = "ptl"
SUFFIX = ".ptl"
TWIN = "torch"
PRECISIONS = ("fp32", "int8")
LAYOUT = "NCHW"
ENGINES = ("qnnpack", "x86")
FUSE = [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]]


def _quantized(model, calib_nchw, engine: str):
    import torch
    import torch.ao.quantization as tq

    class Wrapped(torch.nn.Module):
        def __init__(self, body):
            super().__init__()
            self.quant, self.body, self.dequant = tq.QuantStub(), body, tq.DeQuantStub()

        def forward(self, x):
            return self.dequant(self.body(self.quant(x)))

    body = tq.fuse_modules(copy.deepcopy(model).eval(), FUSE)
    wrapped = Wrapped(body).eval()
    torch.backends.quantized.engine = engine
    # Per-channel weights on both engines: x86's default config has them; qnnpack's
    # default is per-tensor, but its kernels take per-channel weights too (checked: the
    # lite interpreter runs them), which keeps int8 closer to fp32.
    default = tq.get_default_qconfig(engine)
    wrapped.qconfig = tq.QConfig(activation=default.activation,
                                 weight=tq.default_per_channel_weight_observer)
    prepared = tq.prepare(wrapped)
    with torch.inference_mode():
        for i in range(0, len(calib_nchw), 100):
            prepared(calib_nchw[i:i + 100])
    return tq.convert(prepared)


def export(torch_model, precision: str, calib: np.ndarray, path: Path, options: dict) -> dict:
    import torch
    from torch.utils.mobile_optimizer import optimize_for_mobile

    calib_nchw = torch.from_numpy(np.ascontiguousarray(calib.transpose(0, 3, 1, 2)))
    notes: dict = {}
    model = copy.deepcopy(torch_model).eval()
    if precision == "int8":
        engine = options.get("engine", "qnnpack")
        if engine not in ENGINES:
            raise ValueError(f"unknown quantization engine {engine!r}; choose {', '.join(ENGINES)}")
        model = _quantized(model, calib_nchw, engine)
        notes.update(engine=engine, per_channel_weights=True,
                     quantization="static, fused conv+relu and linear+relu")
    with torch.inference_mode():
        scripted = torch.jit.trace(model, calib_nchw[:1])
    try:
        scripted = optimize_for_mobile(scripted)
        notes["optimize_for_mobile"] = "applied"
    except Exception as e:  # this torch build lacks XNNPACK: save unoptimised, and say so
        notes["optimize_for_mobile"] = f"not applied: {' '.join(str(e).split())[:200]}"
    scripted._save_for_lite_interpreter(str(path))
    return {"converter": "torch.jit.trace + _save_for_lite_interpreter",
            "versions": {"torch": torch.__version__}, "layout": LAYOUT, "notes": notes}

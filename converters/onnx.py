"""ONNX (.onnx) from the PyTorch twin with torch.onnx (the dynamo exporter), one file,
dynamic batch. int8 is QDQ from ONNX Runtime's own tools: quant_pre_process, then
quantize_static with per-channel S8S8 MinMax calibration."""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np

from edgecnn.runtime.quiet import quiet

FORMAT = "onnx"
SUFFIX = ".onnx"
TWIN = "torch"
PRECISIONS = ("fp32", "int8")
LAYOUT = "NCHW"
OPSET = 18
INPUT, OUTPUT = "image", "logits"


def _export_fp32(torch_model, example, path: Path) -> None:
    import torch
    model = copy.deepcopy(torch_model).eval()
    batch = torch.export.Dim("batch", min=1)
    with quiet():
        torch.onnx.export(model, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                          dynamo=True, external_data=False, opset_version=OPSET,
                          dynamic_shapes=({0: batch},), verbose=False)


def export(torch_model, precision: str, calib: np.ndarray, path: Path, options: dict) -> dict:
    import onnx
    import onnxruntime
    import torch
    calib_nchw = np.ascontiguousarray(calib.transpose(0, 3, 1, 2))
    versions = {"torch": torch.__version__, "onnx": onnx.__version__}
    if precision == "fp32":
        _export_fp32(torch_model, torch.from_numpy(calib_nchw[:2]), path)
        return {"converter": "torch.onnx.export(dynamo=True)", "versions": versions,
                "layout": LAYOUT, "notes": {"opset": OPSET}}

    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calib_nchw[i:i + 1] for i in range(len(calib_nchw)))

        def get_next(self):
            b = next(self.batches, None)
            return None if b is None else {INPUT: b}

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx"
        _export_fp32(torch_model, torch.from_numpy(calib_nchw[:2]), fp32)
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(path), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    versions["onnxruntime"] = onnxruntime.__version__
    return {"converter": "torch.onnx.export + onnxruntime.quantization.quantize_static",
            "versions": versions, "layout": LAYOUT,
            "notes": {"opset": OPSET, "quantization": "QDQ, per-channel S8S8, MinMax"}}

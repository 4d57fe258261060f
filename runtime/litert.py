"""LiteRT (the TFLite interpreter): ai_edge_litert, or tflite_runtime where only that
installs (32-bit Raspberry Pi OS)."""
from __future__ import annotations

from collections import Counter

import numpy as np

from .runner import Runner, RuntimeMissing, TensorSpec, dequantize, quantize


def _interpreter_module():
    try:
        from ai_edge_litert import interpreter
        return interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter
        return interpreter
    except ImportError:
        raise RuntimeMissing("LiteRT", "pip install ai-edge-litert") from None


class LiteRTRunner(Runner):
    format = "tflite"
    runtime = "LiteRT"

    def _load_impl(self):
        self.lib = _interpreter_module()
        self.interp = self.lib.Interpreter(model_path=str(self.path), num_threads=self.threads)
        self.interp.allocate_tensors()
        self._in = self.interp.get_input_details()[0]
        self._out = self.interp.get_output_details()[0]
        self._batch = int(self._in["shape"][0])

    def _spec(self, d, layout) -> TensorSpec:
        scale, zp = d["quantization"]
        quantized = d["dtype"] in (np.int8, np.uint8) and scale != 0
        return TensorSpec(d["name"], [int(v) for v in d["shape_signature"]], layout,
                          np.dtype(d["dtype"]).name, float(scale) if quantized else None,
                          int(zp) if quantized else None)

    def _input_spec(self):
        return self._spec(self._in, "NHWC")

    def _output_spec(self):
        return self._spec(self._out, "NC")

    def _resize(self, n: int):
        if n != self._batch:
            self.interp.resize_tensor_input(self._in["index"], [n, *self._in["shape"][1:]])
            self.interp.allocate_tensors()
            self._in = self.interp.get_input_details()[0]
            self._out = self.interp.get_output_details()[0]
            self._batch = n

    def _infer_impl(self, batch):
        self._resize(len(batch))
        x = batch
        scale, zp = self._in["quantization"]
        if self._in["dtype"] in (np.int8, np.uint8):
            x = quantize(batch, scale, zp, self._in["dtype"])
        self.interp.set_tensor(self._in["index"], x)
        self.interp.invoke()
        y = self.interp.get_tensor(self._out["index"])
        if self._out["dtype"] in (np.int8, np.uint8):
            y = dequantize(y, *self._out["quantization"])
        return y.astype(np.float32, copy=False)

    def _op_counts_impl(self):
        # the model's own operators, before XNNPACK folds them into DELEGATE nodes
        plain = self.lib.Interpreter(
            model_path=str(self.path),
            experimental_op_resolver_type=self.lib.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        return dict(Counter(op["op_name"] for op in plain._get_ops_details()))

"""LiteRT (the TFLite interpreter): ai_edge_litert, or tflite_runtime where only that
installs (32-bit Raspberry Pi OS)."""
from __future__ import annotations

from collections import Counter

import numpy as np

from .runner import Runner, RuntimeMissing, TensorSpec, dequantize, quantize


def _interpreter_module():
    """(interpreter module, version): ai_edge_litert first, then tflite_runtime."""
    for package in ("ai_edge_litert", "tflite_runtime"):
        try:
            top = __import__(package)
            interpreter = __import__(f"{package}.interpreter", fromlist=["Interpreter"])
        except ImportError:
            continue
        return interpreter, f"{package} {getattr(top, '__version__', '?')}"
    raise RuntimeMissing("LiteRT", "pip install ai-edge-litert (or tflite-runtime on 32-bit ARM)")


class LiteRTRunner(Runner):
    format = "tflite"
    suffix = ".tflite"
    title = "TFLite (LiteRT)"
    marker = "o"
    wheel = "ai-edge-litert"
    runtime = "LiteRT"

    _runtime = staticmethod(_interpreter_module)
    preload = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")

    def _load_impl(self):
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

    def _batchable_impl(self):
        return int(self._in["shape_signature"][0]) == -1

    def _resize(self, n: int):
        self.interp.resize_tensor_input(self._in["index"], [n, *self._in["shape"][1:]])
        self.interp.allocate_tensors()
        self._in = self.interp.get_input_details()[0]
        self._out = self.interp.get_output_details()[0]
        self._batch = n

    def _prepare_impl(self, batch):
        if self._in["dtype"] in (np.int8, np.uint8):
            return quantize(batch, *self._in["quantization"], self._in["dtype"])
        return batch

    def _run_impl(self, x):
        if len(x) != self._batch:
            self._resize(len(x))
        self.interp.set_tensor(self._in["index"], x)
        self.interp.invoke()
        return self.interp.get_tensor(self._out["index"])

    def _finish_impl(self, y):
        if self._out["dtype"] in (np.int8, np.uint8):
            return dequantize(y, *self._out["quantization"])
        return y.astype(np.float32, copy=False)

    def minimal_loop(self, batch):
        it = self.load().lib.Interpreter(model_path=str(self.path), num_threads=self.threads)
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]
        x = quantize(batch, *i["quantization"], np.int8) if i["dtype"] == np.int8 else batch
        index, out_index, set_tensor, invoke, get = i["index"], o["index"], it.set_tensor, it.invoke, it.get_tensor

        def once():
            set_tensor(index, x)
            invoke()
            return get(out_index)
        return once

    def _taps_impl(self, x):
        # every tensor kept, and no delegate (XNNPACK would compute them out of sight)
        it = self.lib.Interpreter(
            model_path=str(self.path), experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=self.lib.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.resize_tensor_input(self._in["index"], [len(x), *self._in["shape"][1:]])
        it.allocate_tensors()
        it.set_tensor(self._in["index"], x)
        it.invoke()
        tensors = {d["index"]: d for d in it.get_tensor_details()}
        out = []
        for op in it._get_ops_details():
            d = tensors[op["outputs"][0]]
            if d["dtype"] not in (np.float32, np.int8, np.uint8) or len(d["shape"]) < 2 or d["shape"][0] != len(x):
                continue  # shapes, indices, scalars
            value = it.get_tensor(d["index"])
            scale, zp = d["quantization"]
            value = dequantize(value, scale, zp) if d["dtype"] != np.float32 and scale else value.astype(np.float32)
            out.append((_layers_named(d["name"]), value))
        return out

    def _op_counts_impl(self):
        # the model's own operators, before XNNPACK folds them into DELEGATE nodes
        plain = self.lib.Interpreter(
            model_path=str(self.path),
            experimental_op_resolver_type=self.lib.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        return dict(Counter(op["op_name"] for op in plain._get_ops_details()))


def _layers_named(tensor_name: str) -> list[str]:
    """The Keras layers a converted tensor is named after: "cnn_1/relu1_1/Relu;cnn_1/
    conv1_1/BiasAdd" -> ["relu1", "conv1"]. Tracing suffixes every scope with the model
    scope's own "_N", which is read from the model scope, not assumed."""
    found = []
    for part in tensor_name.split(";"):
        pieces = part.split("/")
        if len(pieces) < 3:
            continue
        model, layer = pieces[0], pieces[1]
        suffix = "_" + model.rsplit("_", 1)[1] if "_" in model and model.rsplit("_", 1)[1].isdigit() else ""
        found.append(layer[:len(layer) - len(suffix)] if suffix and layer.endswith(suffix) else layer)
    return list(dict.fromkeys(found))

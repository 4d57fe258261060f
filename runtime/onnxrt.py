"""ONNX Runtime, CPU execution provider."""
from __future__ import annotations

from collections import Counter

import numpy as np

from .evaluate import nchw
from .runner import Runner, TensorSpec

_DTYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8"}


def _layout(shape) -> str:
    """NCHW, as edgecnn and torch.onnx.export write, unless only the last image dimension
    can be channels (a fixed 1, 3 or 4, where the first is not): an NHWC file, as tf2onnx
    writes from Keras."""
    dims = list(shape[1:])
    channels = lambda d: isinstance(d, int) and d in (1, 3, 4)  # noqa: E731
    return "NHWC" if len(dims) == 3 and channels(dims[2]) and not channels(dims[0]) else "NCHW"


class OnnxRuntimeRunner(Runner):
    format = "onnx"
    suffix = ".onnx"
    title = "ONNX (ONNX Runtime)"
    marker = "^"
    wheel = "onnxruntime"
    runtime = "ONNX Runtime"
    package = "onnxruntime"
    hint = "pip install onnxruntime"

    def _load_impl(self):
        ort = self.lib
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self._in = self.session.get_inputs()[0]
        self._out = self.session.get_outputs()[0]
        self._out_names = [self._out.name]
        self._layout = _layout(self._in.shape)

    @staticmethod
    def _spec(arg, layout):
        shape = [d if isinstance(d, int) else -1 for d in arg.shape]
        return TensorSpec(arg.name, shape, layout, _DTYPES.get(arg.type, arg.type))

    def _input_spec(self):
        return self._spec(self._in, self._layout)

    def _output_spec(self):
        return self._spec(self._out, "NC")

    def _batchable_impl(self):
        first = self._in.shape[0]
        return not isinstance(first, int) or first < 1  # symbolic or -1: any batch

    def _prepare_impl(self, batch):
        return nchw(batch) if self._layout == "NCHW" else batch

    def _run_impl(self, x):
        return self.session.run(self._out_names, {self._in.name: x})[0]

    def _finish_impl(self, y):
        return y.astype(np.float32, copy=False)

    def minimal_loop(self, batch):
        ort = self.load().lib
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = self.threads, 1
        sess = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: self._prepare_impl(batch)}
        outs = [sess.get_outputs()[0].name]
        return lambda: sess.run(outs, feed)

    def _op_counts_impl(self):
        import onnx
        model = onnx.load(str(self.path), load_external_data=False)
        return dict(Counter(n.op_type for n in model.graph.node))

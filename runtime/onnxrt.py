"""ONNX Runtime, CPU execution provider."""
from __future__ import annotations

from collections import Counter

import numpy as np

from .evaluate import nchw
from .runner import Runner, RuntimeMissing, TensorSpec

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
    taps_wheels = ("onnx",)  # the layer names are read from the file with it
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

    no_taps = "this file records no layer names (name scopes), so its tensors cannot be tied to layers"

    def _taps_impl(self, x):
        """Each node the exporter tied to a layer (its name scope), read after its
        quantize-dequantize pair where it has one: the value the next layer receives."""
        import ast
        try:
            import onnx
        except ImportError:  # the runtime alone runs the file; naming its tensors needs onnx too
            raise RuntimeMissing("onnx", "pip install onnx: explain reads the layer names with it") from None
        model = onnx.load(str(self.path))
        readers = {}
        for node in model.graph.node:
            for name in node.input:
                readers.setdefault(name, []).append(node)
        by_output = {}
        taps = []
        for node in model.graph.node:
            meta = {p.key: p.value for p in node.metadata_props}
            if "pkg.torch.onnx.name_scopes" not in meta or not node.output:
                continue
            scope = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
            tensor = node.output[0]
            q = next((r for r in readers.get(tensor, []) if r.op_type == "QuantizeLinear"), None)
            dq = q and next((r for r in readers.get(q.output[0], []) if r.op_type == "DequantizeLinear"), None)
            tensor = dq.output[0] if dq else tensor
            if tensor not in by_output:
                by_output[tensor] = len(taps)
                taps.append((scope[1:2], tensor))
        if not taps:
            return None
        known = {o.name for o in model.graph.output}
        model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for _, t in taps if t not in known)
        opts = self.lib.SessionOptions()
        opts.intra_op_num_threads, opts.log_severity_level = self.threads, 3
        sess = self.lib.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        values = sess.run([t for _, t in taps], {self._in.name: x})
        return [(scopes, (v.transpose(0, 2, 3, 1) if v.ndim == 4 and self._layout == "NCHW" else v).astype(np.float32))
                for (scopes, _), v in zip(taps, values)]

    def _op_counts_impl(self):
        import onnx
        model = onnx.load(str(self.path), load_external_data=False)
        return dict(Counter(n.op_type for n in model.graph.node))

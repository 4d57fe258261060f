"""The PyTorch lite interpreter (TorchScript Lite, .ptl)."""
from __future__ import annotations

import importlib
from collections import Counter

import numpy as np

from .runner import Runner, TensorSpec


class TorchLiteRunner(Runner):
    format = "ptl"
    runtime = "PyTorch lite interpreter"

    package = "torch"
    hint = "pip install torch"
    preload = ("torch.jit.mobile",)

    @classmethod
    def _runtime(cls):
        lib, version = super()._runtime()
        importlib.import_module("torch.jit.mobile")  # the lite interpreter's loader, a submodule
        return lib, version

    def _load_impl(self):
        self.lib.set_num_threads(self.threads)
        self.module = self.lib.jit.mobile._load_for_lite_interpreter(str(self.path))

    def _input_spec(self):
        # a lite module does not declare its input shape (the manifest does): all dynamic
        return TensorSpec("input", [-1, -1, -1, -1], "NCHW", "float32")

    def _output_spec(self):
        return TensorSpec("output", [-1, -1], "NC", "float32")

    def _prepare_impl(self, batch):
        return self.lib.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))

    def _run_impl(self, x):
        with self.lib.inference_mode():
            return self.module(x)

    def _finish_impl(self, y):
        return y.numpy().astype(np.float32, copy=False)

    def _op_counts_impl(self):
        # the lite bytecode lists operators without counts; the TorchScript graph that a
        # .ptl also carries has one node per call
        full = self.lib.jit.load(str(self.path))
        return dict(Counter(n.kind() for n in full.inlined_graph.nodes()
                            if n.kind().startswith(("aten::", "quantized::"))))

"""The PyTorch lite interpreter (TorchScript Lite, .ptl)."""
from __future__ import annotations

from collections import Counter

import numpy as np

from .runner import Runner, RuntimeMissing, TensorSpec


class TorchLiteRunner(Runner):
    format = "ptl"
    runtime = "PyTorch lite interpreter"

    def _load_impl(self):
        try:
            import torch
            from torch.jit.mobile import _load_for_lite_interpreter
        except ImportError:
            raise RuntimeMissing(self.runtime, "pip install torch") from None
        self.torch = torch
        torch.set_num_threads(self.threads)
        self.module = _load_for_lite_interpreter(str(self.path))

    def _input_spec(self):
        # a lite module does not declare its input shape (the manifest does): all dynamic
        return TensorSpec("input", [-1, -1, -1, -1], "NCHW", "float32")

    def _output_spec(self):
        return TensorSpec("output", [-1, -1], "NC", "float32")

    def _infer_impl(self, batch):
        x = self.torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        with self.torch.inference_mode():
            return self.module(x).numpy().astype(np.float32, copy=False)

    def _op_counts_impl(self):
        # the lite bytecode lists operators without counts; the TorchScript graph that a
        # .ptl also carries has one node per call
        full = self.torch.jit.load(str(self.path))
        return dict(Counter(n.kind() for n in full.inlined_graph.nodes()
                            if n.kind().startswith(("aten::", "quantized::"))))

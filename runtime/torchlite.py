"""The PyTorch lite interpreter (TorchScript Lite, .ptl)."""
from __future__ import annotations

import importlib
import json
import zipfile
from collections import Counter

import numpy as np

from .evaluate import nchw
from .runner import Runner, TensorSpec

# an int8 .ptl names the quantized engine it was made for in this extra file
ENGINE_FILE = "edgecnn.json"


def recorded_engine(path) -> str | None:
    """The engine an edgecnn int8 .ptl was quantized for, or None (fp32, or not ours)."""
    try:
        with zipfile.ZipFile(path) as z:
            member = next((i for i in z.infolist() if i.filename.endswith(f"/extra/{ENGINE_FILE}")), None)
            if member is None or member.file_size > 4096:
                return None
            engine = json.loads(z.read(member)).get("engine")
    except Exception:  # a damaged file is for the lite interpreter's loader to refuse, with its reason
        return None
    return engine if isinstance(engine, str) else None


class TorchLiteRunner(Runner):
    no_taps = "the PyTorch lite interpreter exposes no intermediate tensors"
    format = "ptl"
    suffix = ".ptl"
    title = "TorchScript Lite"
    marker = "s"
    warning = ("a .ptl file carries TorchScript code that runs when it is loaded: "
               "load only artifacts from a source you trust")
    wheel = "torch"
    emulated_extra = "torch"
    runtime = "PyTorch lite interpreter"

    package = "torch"
    hint = "pip install torch"
    preload = ("torch.jit.mobile",)
    # int8 on qnnpack: a convolution rebuilds its indirection buffer (pointers to its input
    # pixels) unless its input tensor is where the previous call's was, which the allocator
    # decides in a cycle of inferences (2 or 4 measured; the README's estimates section). A
    # counted region spans 4 inferences, a whole cycle, and counts their mean; fp32 .ptl
    # files, which repeat anyway, are counted the same way.
    count_window = 4

    @classmethod
    def _runtime(cls):
        lib, version = super()._runtime()
        importlib.import_module("torch.jit.mobile")  # the lite interpreter's loader, a submodule
        return lib, version

    def _load_impl(self):
        self.lib.set_num_threads(self.threads)
        # the kernels the file was made for, where this PyTorch has them (an ARM build has
        # no x86 engine: it keeps its own). The engine is read when the file is loaded.
        wanted = recorded_engine(self.path)
        backends = self.lib.backends.quantized
        if wanted in backends.supported_engines:
            backends.engine = wanted
        self.engine = backends.engine
        if wanted:
            self.version = f"{self.version} ({self.engine} engine)"
        self.module = self.lib.jit.mobile._load_for_lite_interpreter(str(self.path))

    def _input_spec(self):
        # a lite module does not declare its input shape (the manifest does): all dynamic
        return TensorSpec("input", [-1, -1, -1, -1], "NCHW", "float32")

    def _output_spec(self):
        return TensorSpec("output", [-1, -1], "NC", "float32")

    def _prepare_impl(self, batch):
        return self.lib.from_numpy(nchw(batch))

    def _run_impl(self, x):
        with self.lib.inference_mode():
            return self.module(x)

    def _finish_impl(self, y):
        return y.numpy().astype(np.float32, copy=False)

    def minimal_loop(self, batch):
        torch = self.load().lib
        module = torch.jit.mobile._load_for_lite_interpreter(str(self.path))
        t = torch.from_numpy(nchw(batch))

        def once():
            with torch.inference_mode():
                return module(t)
        return once

    def _op_counts_impl(self):
        # the lite bytecode lists operators without counts; the TorchScript graph that a
        # .ptl also carries has one node per call
        full = self.lib.jit.load(str(self.path))
        return dict(Counter(n.kind() for n in full.inlined_graph.nodes()
                            if n.kind().startswith(("aten::", "quantized::"))))

"""edgecnn.runtime: the on-device harness. One runner per runtime, found by format."""
from __future__ import annotations

import importlib

from .runner import ArtifactError, Runner, RuntimeMissing, TensorSpec

# format -> (module, class); a new runtime is one file and one line here
RUNNERS = {
    "tflite": ("litert", "LiteRTRunner"),
    "ptl": ("torchlite", "TorchLiteRunner"),
    "onnx": ("onnxrt", "OnnxRuntimeRunner"),
    "numpy": ("numpyrt", "NumpyRunner"),
}


def runner_class(fmt: str) -> type[Runner]:
    module, cls = RUNNERS[fmt]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def runner_for(fmt: str, path, threads: int = 1) -> Runner:
    return runner_class(fmt)(path, threads)


__all__ = ["ArtifactError", "Runner", "RuntimeMissing", "TensorSpec", "RUNNERS", "runner_class", "runner_for"]

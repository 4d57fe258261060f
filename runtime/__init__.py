"""edgecnn.runtime: the on-device harness. One runner per runtime, found by format.

A format's device-side facts (suffix, title, plot marker, trust warning, what emulated
boards install for it) are attributes of its runner class (runner.py lists them); the
toolchain reads them from here and names no format itself."""
from __future__ import annotations

import importlib
from pathlib import Path

from .runner import ArtifactError, Runner, RuntimeMissing, TensorSpec

# format -> (module, class); a new runtime is one file and one line here
RUNNERS = {
    "tflite": ("litert", "LiteRTRunner"),
    "ptl": ("torchlite", "TorchLiteRunner"),
    "onnx": ("onnxrt", "OnnxRuntimeRunner"),
    "numpy": ("numpyrt", "NumpyRunner"),
    "pte": ("etrt", "ExecuTorchRunner"),
}


def runner_class(fmt: str) -> type[Runner]:
    module, cls = RUNNERS[fmt]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def format_of(path) -> str | None:
    """The format whose suffix `path` has, if any."""
    suffix = Path(path).suffix
    return next((f for f in RUNNERS if runner_class(f).suffix == suffix), None)


def runner_for(fmt: str, path, threads: int = 1) -> Runner:
    return runner_class(fmt)(path, threads)


def load(path, threads: int = 1, scaling: dict | None = None, classes: list[str] | None = None):
    """An artifact ready to predict on images: `load(path).predict(images, top_k=3)` (predict.py)."""
    from .predict import load as _load
    return _load(path, threads, scaling, classes)


__all__ = ["ArtifactError", "Runner", "RuntimeMissing", "TensorSpec", "RUNNERS", "format_of", "load",
           "runner_class", "runner_for"]

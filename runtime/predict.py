"""Predictions from Python with numpy and the artifact's one runtime, here or on a device:

    from edgecnn.runtime import load
    model = load("artifacts/torch-digits/model.int8.tflite")
    model.predict(images, top_k=3)  # [[("7", 0.98), ("9", 0.01), ("3", 0.004)], ...]

`images` are raw pixels as the dataset held them (0..255, NHWC, or one HWC image; a
grey HW image or NHW batch gains its channel). The artifact's preprocessing and class
names come from the manifest.json beside it, which `edgecnn export` wrote. A file that
no manifest lists is a model made elsewhere: its classes are 0..N-1 unless given, and its
scaling is divide-by-255 unless given. edgecnn's artifacts output logits, made into
probabilities by a softmax; a file made elsewhere whose outputs already are
probabilities (non-negative, each row summing to 1) is taken as it is.

This module does not check the file's sha256 against the manifest: `edgecnn predict`
does, before it loads anything.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import format_of, runner_for
from .evaluate import infer_all
from .harness import check_input
from .runner import ArtifactError

MANIFEST = "manifest.json"


def manifest_model(path: Path) -> dict | None:
    """The manifest's model section when a manifest beside `path` lists it, else None."""
    manifest = path.parent / MANIFEST
    try:
        doc = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    listed = any(isinstance(e, dict) and e.get("file") == path.name for e in doc.get("artifacts") or [])
    model = doc.get("model")
    return model if listed and isinstance(model, dict) else None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Model:
    def __init__(self, path, threads: int = 1, scaling: dict | None = None, classes: list[str] | None = None):
        self.path = Path(path)
        self.format = format_of(self.path)
        if self.format is None:
            raise ArtifactError(f"{self.path}: not an artifact (unknown suffix {self.path.suffix!r})")
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: no such file")
        info = manifest_model(self.path)
        self.made_by_edgecnn = info is not None
        info = info or {}
        self.scaling = dict(scaling or info.get("scaling") or {"divide_by": 255.0})
        self._classes = list(classes or info.get("classes") or [])
        self.input_shape = tuple(info["input_shape"]) if info.get("input_shape") else None
        self.runner = runner_for(self.format, self.path, threads)

    @property
    def classes(self) -> list[str]:
        return self._classes

    def batch(self, images) -> np.ndarray:
        """`images` as an NHWC batch."""
        a = np.asarray(images)
        shape = self.input_shape
        if shape is None:
            spec = self.runner.input_spec
            dims = list(spec.shape[1:4])
            shape = tuple(dims if spec.layout == "NHWC" else dims[1:] + dims[:1]) if len(dims) == 3 else None
        if shape and shape[2] == 1 and a.shape[-2:] == tuple(shape[:2]):
            a = a[..., None]  # grey images without their channel
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4:
            raise ArtifactError(f"images of shape {list(np.shape(images))}: expected NHWC, HWC, NHW or HW")
        check_input(self.runner, a.shape[1:])
        return a

    def logits(self, images) -> np.ndarray:
        return infer_all(self.runner, self.batch(images), self.scaling)

    def as_probabilities(self, outputs: np.ndarray) -> np.ndarray:
        out = outputs.astype(np.float64)
        if not self.made_by_edgecnn and np.all(out >= 0) and np.allclose(out.sum(axis=1), 1, atol=1e-3):
            return out
        return softmax(out)

    def probabilities(self, images) -> np.ndarray:
        return self.as_probabilities(self.logits(images))

    def top(self, probabilities: np.ndarray, top_k: int = 1) -> list[list[tuple[str, float]]]:
        names = self._classes or [str(i) for i in range(probabilities.shape[1])]
        if len(names) != probabilities.shape[1]:
            raise ArtifactError(f"{self.path.name} gives {probabilities.shape[1]} outputs per image, "
                                f"but there are {len(names)} class names")
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        return [[(names[j], float(p[j])) for j in row] for p, row in zip(probabilities, order)]

    def predict(self, images, top_k: int = 1) -> list[list[tuple[str, float]]]:
        """For each image, its `top_k` classes as (name, probability), most likely first."""
        return self.top(self.probabilities(images), top_k)


def load(path, threads: int = 1, scaling: dict | None = None, classes: list[str] | None = None) -> Model:
    return Model(path, threads, scaling, classes)

"""The runner protocol: one small class per runtime, the same few methods.

A runner is made from an artifact path and a thread count and loads lazily. `infer`
takes the canonical batch (float32 in [0, 1], NHWC) and returns float32 logits; the
runner does the layout change and int8 (de)quantization itself, from the artifact's own
tensor parameters, so nothing outside this package branches on format.

This package imports nothing from edgecnn.toolchain or edgecnn.converters and needs only
numpy plus the one runtime a runner drives: it is what runs on a device.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .quiet import quiet


class ArtifactError(Exception):
    """The artifact cannot be loaded or run: missing, truncated, not this format."""


class RuntimeMissing(Exception):
    """The runtime this artifact needs is not installed here."""

    def __init__(self, runtime: str, hint: str):
        super().__init__(f"{runtime} is not installed ({hint})")
        self.runtime, self.hint = runtime, hint


@dataclass
class TensorSpec:
    name: str
    shape: list          # as the artifact declares it; -1 or None for a dynamic dimension
    layout: str          # NHWC, NCHW or NC
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


class Runner:
    format = ""
    runtime = ""

    def __init__(self, path, threads: int = 1):
        self.path = Path(path)
        self.threads = threads
        self.load_ms: float | None = None
        self._loaded = False

    # -- the protocol --------------------------------------------------------------
    def load(self) -> "Runner":
        if not self._loaded:
            if not self.path.is_file():
                raise ArtifactError(f"{self.path}: no such file")
            t = time.perf_counter()
            try:
                with quiet(stdout=False):  # runtimes announce delegates on fd 2
                    self._load_impl()
            except (RuntimeMissing, ArtifactError):
                raise
            except Exception as e:  # each runtime raises its own types for a bad file
                raise ArtifactError(f"{self.path.name}: {self.runtime} cannot load it "
                                    f"({' '.join(str(e).split())[:300]})") from None
            self.load_ms = (time.perf_counter() - t) * 1000
            self._loaded = True
        return self

    @property
    def input_spec(self) -> TensorSpec:
        return self.load()._input_spec()

    @property
    def output_spec(self) -> TensorSpec:
        return self.load()._output_spec()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a float32 NHWC batch in [0, 1]."""
        self.load()
        return self._infer_impl(np.asarray(batch, dtype=np.float32))

    def op_counts(self) -> dict[str, int]:
        return dict(sorted(self.load()._op_counts_impl().items()))

    # -- hooks for each runtime -----------------------------------------------------
    def _load_impl(self) -> None:
        raise NotImplementedError

    def _input_spec(self) -> TensorSpec:
        raise NotImplementedError

    def _output_spec(self) -> TensorSpec:
        raise NotImplementedError

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _op_counts_impl(self) -> dict[str, int]:
        raise NotImplementedError


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)

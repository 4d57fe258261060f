"""The runner protocol: one small class per runtime, the same few methods.

A runner is made from an artifact path and a thread count and loads lazily. `infer`
takes the canonical batch (float32 in [0, 1], NHWC) and returns float32 logits; the
runner does the layout change and int8 (de)quantization itself, from the artifact's own
tensor parameters, so nothing outside this package branches on format.

`infer` is three steps, also public so that `bench` can time the runtime alone, the way
TFLite's benchmark_model times invoke(): `prepare` (float NHWC to the artifact's own
layout and dtype), `run` (the runtime call) and `finish` (back to float logits).

This package imports nothing from edgecnn.toolchain or edgecnn.converters and needs only
numpy plus the one runtime a runner drives: it is what runs on a device.
"""
from __future__ import annotations

import importlib
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
    # the format's registry entry on the device side (the converter's is in converters/):
    format = ""   # its name, the key in RUNNERS
    suffix = ""   # the file suffix that names it
    title = ""    # its name in tables, reports and plot legends
    marker = "P"  # its matplotlib marker in the accuracy-latency plot
    warning: str | None = None  # what to know before loading such a file from elsewhere
    wheel: str | None = None    # the pip distribution an emulated ARM board installs to run it
    taps_wheels: tuple = ()     # what else taps() needs there (explain), installed beside it
    not_emulated = ""           # why emulated ARM boards cannot run it, when wheel is None
    emulated_extra: str | None = None  # when its wheel is too large to provision by default: the
                                       # opt-in that adds it (`device setup emulated --with NAME`)
    precision_hidden = ""       # why its operators do not show whether it is int8, where they do not
    runtime = ""  # its name for people
    package = ""  # the Python package that is the runtime
    hint = ""     # how to install it
    preload: tuple[str, ...] = ()  # modules to import before forking loaders (sandbox.py); () means package
    count_window = 1  # inferences in one counted region (harness.count_regions): more where the
                      # runtime's work per inference repeats only over a cycle of several

    def __init__(self, path, threads: int = 1):
        self.path = Path(path)
        self.threads = threads
        self.import_ms: float | None = None  # importing the runtime's module
        self.load_ms: float | None = None    # reading and preparing this artifact
        self.version = ""      # the runtime's version, known once loaded
        self._loaded = False

    @classmethod
    def modules(cls) -> tuple[str, ...]:
        """The modules that hold the runtime, its preferred one first."""
        return cls.preload or (cls.package,)

    @classmethod
    def probe(cls) -> str:
        """The runtime's version if it is installed here; RuntimeMissing if not."""
        return cls._runtime()[1]

    # -- the protocol --------------------------------------------------------------
    def load(self) -> "Runner":
        if not self._loaded:
            if not self.path.is_file():
                raise ArtifactError(f"{self.path}: no such file")
            try:
                with quiet(stdout=False):  # runtimes announce delegates on fd 2
                    t = time.perf_counter()
                    self.lib, self.version = self._runtime()  # timed apart: paid once per process
                    self.import_ms = (time.perf_counter() - t) * 1000
                    t = time.perf_counter()
                    self._load_impl()
                    self.load_ms = (time.perf_counter() - t) * 1000
            except (RuntimeMissing, ArtifactError):
                raise
            except Exception as e:  # each runtime raises its own types for a bad file
                raise ArtifactError(f"{self.path.name}: {self.runtime} cannot load it "
                                    f"({' '.join(str(e).split())[:300]})") from None
            self._loaded = True
        return self

    @property
    def input_spec(self) -> TensorSpec:
        return self.load()._input_spec()

    @property
    def output_spec(self) -> TensorSpec:
        return self.load()._output_spec()

    @property
    def batchable(self) -> bool:
        """Whether `infer` takes batches larger than one (a fixed-batch artifact does not)."""
        return self.load()._batchable_impl()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a float32 NHWC batch in [0, 1]."""
        return self.finish(self.run(self.prepare(batch)))

    def prepare(self, batch: np.ndarray):
        """The canonical batch in the artifact's own input layout, dtype and container."""
        if not self._loaded:
            self.load()
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        return self._prepare_impl(batch)

    def run(self, native):
        """One runtime call on a prepared input; its raw output."""
        if not self._loaded:
            self.load()
        return self._run_impl(native)

    def finish(self, raw) -> np.ndarray:
        """Raw output to float32 logits."""
        return self._finish_impl(raw)

    def minimal_loop(self, batch: np.ndarray):
        """A closure that runs this artifact once on `batch` (float32 NHWC) through the
        runtime's own API, opened afresh, with nothing of edgecnn's in between: the
        yardstick that benchmarks/harness.py times the harness against."""
        raise NotImplementedError

    def op_counts(self) -> dict[str, int]:
        return dict(sorted(self.load()._op_counts_impl().items()))

    def concerns(self) -> list[str]:
        """What to know about this loaded file before relying on it (its operators
        outside a fast delegate, say), one sentence each; none by default."""
        return []

    def taps(self, batch: np.ndarray) -> list[tuple[list[str], np.ndarray]] | None:
        """Every intermediate tensor the runtime exposes for a float32 NHWC batch, in the
        order they are computed: (the layer names the file ties to it, its values as float
        NHWC, dequantized), with the model's output last. None when the runtime exposes
        none (`no_taps` says why)."""
        self.load()
        try:
            if self.batchable or len(batch) == 1:
                return self._taps_impl(self.prepare(batch))
            per_image = [self._taps_impl(self.prepare(batch[i:i + 1])) for i in range(len(batch))]
        except (RuntimeMissing, ArtifactError):
            raise
        except Exception as e:  # each runtime raises its own types
            raise ArtifactError(f"{self.path.name}: {self.runtime} cannot expose its tensors "
                                f"({' '.join(str(e).split())[:300]})") from None
        if per_image[0] is None:
            return None
        return [(scopes, np.concatenate([taps[k][1] for taps in per_image]))
                for k, (scopes, _) in enumerate(per_image[0])]

    no_taps = "its runtime does not expose intermediate tensors"

    @classmethod
    def has_taps(cls) -> bool:
        """Whether this runtime can expose intermediate tensors at all (known unloaded)."""
        return cls._taps_impl is not Runner._taps_impl

    # -- hooks for each runtime -----------------------------------------------------
    @classmethod
    def _runtime(cls) -> tuple[object, str]:
        """Import the runtime: (its module, its version); RuntimeMissing if not installed."""
        try:
            lib = importlib.import_module(cls.package)
        except ImportError:
            raise RuntimeMissing(cls.runtime, cls.hint) from None
        return lib, f"{cls.package} {getattr(lib, '__version__', '?')}"

    def _load_impl(self) -> None:
        raise NotImplementedError

    def _input_spec(self) -> TensorSpec:
        raise NotImplementedError

    def _output_spec(self) -> TensorSpec:
        raise NotImplementedError

    def _prepare_impl(self, batch: np.ndarray):
        raise NotImplementedError

    def _run_impl(self, native):
        raise NotImplementedError

    def _finish_impl(self, raw) -> np.ndarray:
        raise NotImplementedError

    def _op_counts_impl(self) -> dict[str, int]:
        raise NotImplementedError

    def _batchable_impl(self) -> bool:
        return True

    def _taps_impl(self, native) -> list[tuple[list[str], np.ndarray]] | None:
        return None


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    # in place on one temporary: this runs on every batch-1 inference, where each extra
    # numpy pass is a measurable share of a 0.1 ms model
    info = np.iinfo(dtype)
    q = np.multiply(x, np.float32(1.0 / scale), dtype=np.float32)
    np.rint(q, out=q)
    q += np.float32(zero_point)
    np.clip(q, info.min, info.max, out=q)
    return q.astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)

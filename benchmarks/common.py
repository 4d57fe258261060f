"""What the benchmarks share: the installed CLI and a quick MNIST run to measure with."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EDGECNN = str(Path(sys.executable).parent / "edgecnn")


def mnist_run(out: Path, framework: str = "torch", model: str = "cnn") -> Path:
    """A 1-epoch MNIST run (needs $EDGECNN_DATA_DIR): what is measured does not depend on
    how long the model trained."""
    subprocess.run([EDGECNN, "train", "--framework", framework, "--model", model, "--dataset", "mnist",
                    "--epochs", "1", "--out", str(out)], check=True, stderr=subprocess.DEVNULL)
    return out


def mnist_artifacts(tmp: Path, framework: str = "torch", formats: str | None = None,
                    int8: bool = True, model: str = "cnn") -> Path:
    """`formats`: comma-separated [default: export's own]."""
    run = mnist_run(tmp / f"{framework}-{model}-mnist", framework, model)
    out = tmp / f"{framework}-{model}-mnist-artifacts"
    subprocess.run([EDGECNN, "export", str(run), *(["--formats", formats] if formats else []), *(["--int8"] if int8 else []),
                    "--out", str(out)], check=True, capture_output=True)
    return out


def time_minimal(once, min_runs: int, min_seconds: float, warmup: int = 20) -> float:
    for _ in range(warmup):
        once()
    clock, times = time.perf_counter_ns, []
    end = clock() + int(min_seconds * 1e9)
    while len(times) < min_runs or clock() < end:
        t = clock()
        once()
        times.append(clock() - t)
    return float(np.median(times)) / 1e6

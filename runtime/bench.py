"""Batch-1 latency of one artifact, the way a single-stream edge app sees it.

Load time, the first inference (which pays for lazy allocation and kernel selection),
a warm-up, then a steady state of at least `min_runs` runs and at least `min_seconds`.
Every run is kept: no outlier clipping, because the tail is what a latency budget is
about.

`latency_ms` times the runtime call alone on an input already in the artifact's layout
and dtype (as TFLite's benchmark_model times invoke()); `infer_ms` times the whole
float-in, logits-out `infer`, which adds the layout change and int8 (de)quantization
done in numpy. On these small models that numpy work is a measurable share (several
microseconds against a 20-60 us model), so the two are kept apart rather than mixed.
"""
from __future__ import annotations

import time

import numpy as np

from .runner import Runner

MIN_RUNS, MIN_SECONDS, WARMUP_RUNS = 200, 1.0, 20
ROUNDS = 5  # the steady state cut into this many consecutive rounds: their p50s show the noise


def round_medians(ns: np.ndarray, rounds: int = ROUNDS) -> list[float]:
    """The p50 (ms) of each of `rounds` consecutive slices of the timed runs: how much the
    median itself moves within one measurement, which a comparison with another run must
    allow for (toolchain/baseline.py)."""
    return [float(np.median(chunk)) / 1e6 for chunk in np.array_split(np.asarray(ns, np.float64), rounds)
            if len(chunk)]


def latency_stats(ns: np.ndarray) -> dict:
    ms = np.asarray(ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(ms.mean()),
            "std": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0, "min": float(ms.min()),
            "max": float(ms.max())}


def bench(runner: Runner, sample: np.ndarray, min_runs: int = MIN_RUNS, min_seconds: float = MIN_SECONDS,
          warmup: int = WARMUP_RUNS) -> dict:
    """`sample` is one canonical input, float32 NHWC of batch 1."""
    runner.load()
    t = time.perf_counter_ns()
    runner.infer(sample)
    first_ms = (time.perf_counter_ns() - t) / 1e6
    native = runner.prepare(sample)
    run, clock = runner.run, time.perf_counter_ns
    for _ in range(warmup):
        run(native)
    times = []
    start = clock()
    end = start + int(min_seconds * 1e9)
    while len(times) < min_runs or clock() < end:
        t = clock()
        run(native)
        times.append(clock() - t)
    steady_s = (clock() - start) / 1e9
    whole = []
    for _ in range(min_runs):
        t = clock()
        runner.infer(sample)
        whole.append(clock() - t)
    return {"import_ms": runner.import_ms, "load_ms": runner.load_ms, "first_ms": first_ms,
            "warmup_runs": warmup, "runs": len(times), "bench_seconds": steady_s,
            "latency_ms": dict(latency_stats(np.array(times)), rounds_p50=round_medians(np.array(times))),
            "infer_ms": latency_stats(np.array(whole))}

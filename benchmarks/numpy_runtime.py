"""The NumPy runtime against ONNX Runtime on the same fp32 weights, side by side.

For batch 1 and batch 256 of MNIST test images, each round times both runners on the
same prepared input (`Runner.run`, the runtime call alone, as `edgecnn validate`'s
latency does), alternating which goes first. It prints each runtime's median over
rounds and the median of the per-round ratios numpy / onnxruntime: how much slower the
dependency-free runtime is on this CPU. Single times on this shared machine are noise;
the ratio, taken in one process a moment apart, is the number to quote.

Usage: python benchmarks/numpy_runtime.py [ART_DIR] [--rounds 7] [--seconds 1] [--threads 1]
ART_DIR holds model.fp32.onnx and model.fp32.npz (`edgecnn export --formats onnx,numpy`);
with none, a 1-epoch NumPy-trained MNIST run is made and exported (needs $EDGECNN_DATA_DIR).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

from common import mnist_artifacts, time_minimal
from edgecnn.runtime import runner_for
from edgecnn.toolchain import data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("art_dir", nargs="?")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=1.0, help="per runtime per batch size per round")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    folder = Path(args.art_dir) if args.art_dir else mnist_artifacts(
        Path(tempfile.mkdtemp(prefix="edgecnn-bench-")), "numpy", formats="onnx,numpy", int8=False)
    runners = {name: runner_for(fmt, folder / f"model.fp32{suffix}", args.threads).load()
               for name, fmt, suffix in (("numpy", "numpy", ".npz"), ("onnxruntime", "onnx", ".onnx"))}
    x_test = data.load("mnist").x_test.astype(np.float32) / 255.0
    print(f"NumPy runtime vs ONNX Runtime, fp32, {args.threads} thread(s), {args.rounds} rounds "
          f"({runners['numpy'].version}, {runners['onnxruntime'].version})")
    print(f"{'batch':>5} {'numpy p50':>12} {'onnxruntime p50':>16} {'ratio':>7} {'ratios min-max':>15} "
          f"{'numpy img/s':>12} {'ort img/s':>10}")
    for batch in (1, 256):
        native = {name: r.prepare(x_test[:batch]) for name, r in runners.items()}
        times = {name: [] for name in runners}
        ratios = []
        for rnd in range(args.rounds):
            order = list(runners) if rnd % 2 == 0 else list(reversed(runners))
            got = {name: time_minimal(lambda: runners[name].run(native[name]), 5, args.seconds, warmup=1)
                   for name in order}
            for name, ms in got.items():
                times[name].append(ms)
            ratios.append(got["numpy"] / got["onnxruntime"])
        n, o = statistics.median(times["numpy"]), statistics.median(times["onnxruntime"])
        print(f"{batch:>5} {n:>9.3f} ms {o:>13.3f} ms {statistics.median(ratios):>7.2f} "
              f"{min(ratios):>7.2f}-{max(ratios):<7.2f} {batch / n * 1000:>12,.0f} {batch / o * 1000:>10,.0f}",
              flush=True)


if __name__ == "__main__":
    main()

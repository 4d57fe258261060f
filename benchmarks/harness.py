"""Harness-overhead benchmark: does measuring through edgecnn's runners change the latency?

For each artifact, in one process, it alternates two timers on the same batch-1 image:
the harness (`edgecnn.runtime.bench`, whose `latency_ms` times `Runner.run` on an input
that `Runner.prepare` already put in the artifact's layout and dtype) and a minimal loop
that calls the runtime's own API directly on the same prepared input. Rounds alternate
and rotate order; the ratio printed is the median over rounds of harness p50 / minimal
p50 (target: <= 1.05): what the harness's own Python layers add.

The harness also reports `infer_ms`, the whole float-in, logits-out call, which adds the
layout change and int8 (de)quantization in numpy; its p50 is printed beside the others
so that cost is in plain view rather than hidden in the latency.

It also times `edgecnn.runtime.evaluate` over the whole test split (10,000 MNIST
images) per artifact (target: <= 2 s for LiteRT and ONNX Runtime), median of --repeat.

Usage: python benchmarks/harness.py [ART_DIR ...] [--rounds 7] [--seconds 0.5] [--repeat 3]
       [--threads 1]
ART_DIR is a folder written by `edgecnn export` (e.g. with --int8 on MNIST); with none,
a 1-epoch MNIST run is trained and exported first (needs $EDGECNN_DATA_DIR).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from common import mnist_artifacts, time_minimal
from edgecnn.runtime import runner_for
from edgecnn.runtime.bench import bench
from edgecnn.runtime.evaluate import evaluate
from edgecnn.toolchain import data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("art_dirs", nargs="*")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.5, help="per timer per round")
    ap.add_argument("--repeat", type=int, default=3, help="evaluations of the test split per artifact")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not args.art_dirs:
        args.art_dirs = [mnist_artifacts(Path(tempfile.mkdtemp(prefix="edgecnn-bench-")))]
    print(f"{'artifact':<28} {'harness p50':>12} {'minimal p50':>12} {'ratio':>7} {'ratios min-max':>15} "
          f"{'with I/O p50':>13} {'eval 10k s':>11}")
    for folder in map(Path, args.art_dirs):
        manifest = json.loads((folder / "manifest.json").read_text())
        ds = data.load(manifest["model"]["dataset"])
        sample = ds.x_test[:1].astype(np.float32) / 255.0
        for entry in manifest["artifacts"]:
            if entry["status"] != "ok":
                continue
            path = folder / entry["file"]
            runner = runner_for(entry["format"], path, args.threads).load()
            once = runner.minimal_loop(sample)
            ratios, h_p50, m_p50, io_p50 = [], [], [], []
            for r in range(args.rounds):
                order = ("h", "m") if r % 2 == 0 else ("m", "h")
                got = {}
                for which in order:
                    if which == "h":
                        b = bench(runner, sample, min_runs=200, min_seconds=args.seconds)
                        got["h"] = b["latency_ms"]["p50"]
                        io_p50.append(b["infer_ms"]["p50"])
                    else:
                        got["m"] = time_minimal(once, 200, args.seconds)
                h_p50.append(got["h"])
                m_p50.append(got["m"])
                ratios.append(got["h"] / got["m"])
            evals = []
            for _ in range(args.repeat):
                evals.append(evaluate(runner, ds.x_test, ds.y_test, {"divide_by": 255.0})["eval_seconds"])
            name = f"{manifest['model']['source_framework']} {entry['file']}"
            print(f"{name:<28} {statistics.median(h_p50):>9.4f} ms {statistics.median(m_p50):>9.4f} ms "
                  f"{statistics.median(ratios):>7.3f} {min(ratios):>7.3f}-{max(ratios):<7.3f} "
                  f"{statistics.median(io_p50):>10.4f} ms {statistics.median(evals):>11.2f}", flush=True)


if __name__ == "__main__":
    main()

"""The runtimes a PyTorch-trained model ships to, side by side: every format made from
the PyTorch twin (TorchScript Lite, ONNX Runtime, ExecuTorch), fp32 and int8, p50 at
batch 1 on one thread, each through its runtime's own API (Runner.minimal_loop).

All the artifacts of a model are loaded in one process and timed in interleaved
rounds, the order rotating each round, so that a noisy neighbour slows them alike; the
table gives the median over rounds of each p50, and each format's ratio to the first
format's at the same precision (median of the per-round ratios).

Usage: python benchmarks/torch_runtimes.py [ART_DIR ...] [--models cnn,mobilenet]
       [--rounds 7] [--seconds 0.3] [--threads 1]
ART_DIR is a folder written by `edgecnn export` with those formats and --int8; with
none, a 1-epoch MNIST run of each model is trained and exported first (needs
$EDGECNN_DATA_DIR): latency does not depend on how long a model trained.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from common import mnist_artifacts, time_minimal
from edgecnn import converters
from edgecnn.runtime import runner_class, runner_for
from edgecnn.toolchain import data


def measure(folder: Path, rounds: int, seconds: float, threads: int) -> tuple[str, dict]:
    manifest = json.loads((folder / "manifest.json").read_text())
    ds = data.load(manifest["model"]["dataset"])
    sample = ds.x_test[:1].astype(np.float32) / 255.0
    loops = {(e["format"], e["precision"]): runner_for(e["format"], folder / e["file"], threads).minimal_loop(sample)
             for e in manifest["artifacts"] if e["status"] == "ok" and e["format"] in converters.made_from("torch")}
    keys = list(loops)
    p50s: dict = {k: [] for k in keys}
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            p50s[k].append(time_minimal(loops[k], 200, seconds))
    return manifest["model"]["arch"], p50s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("art_dirs", nargs="*")
    ap.add_argument("--models", default="cnn,mobilenet")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.3, help="per artifact per round")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    formats = converters.made_from("torch")
    if not args.art_dirs:
        tmp = Path(tempfile.mkdtemp(prefix="edgecnn-bench-"))
        args.art_dirs = [mnist_artifacts(tmp, "torch", ",".join(formats), model=m) for m in args.models.split(",")]
    first = formats[0]
    print(f"p50 ms at batch 1, {args.threads} thread(s), median of {args.rounds} interleaved rounds; "
          f"(x): median ratio to {runner_class(first).title}\n")
    print("| model | precision | " + " | ".join(runner_class(f).title for f in formats) + " |")
    print("| --- | --- |" + " ---: |" * len(formats))
    for folder in map(Path, args.art_dirs):
        arch, p50s = measure(folder, args.rounds, args.seconds, args.threads)
        for precision in dict.fromkeys(p for _, p in p50s):
            cells = []
            for f in formats:
                mine, base = p50s.get((f, precision)), p50s.get((first, precision))
                if not mine:
                    cells.append("not made")
                    continue
                ratio = f" ({statistics.median(m / b for m, b in zip(mine, base)):.2f}x)" if base and f != first else ""
                cells.append(f"{statistics.median(mine):.4f}{ratio}")
            print(f"| {arch} | {precision} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

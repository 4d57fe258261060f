"""What `edgecnn explain` costs: seconds, and the ratio to a plain `validate` of the same
int8 artifacts, for the seed CNN and `mobilenet` on MNIST (28x28, 10,000 test images).

Three commands per model, as a user runs them (process start and imports included), in
turn, --repeat times (default 3), medians printed:
  validate ART --precisions int8            every int8 artifact scored and timed
  explain ART --no-alone                    each layer's output read and compared
  explain ART                               and each layer alone int8: one conversion
                                            per conv2d/dense layer and format

Usage: python benchmarks/explain.py [--models cnn,mobilenet] [--repeat 3]
(needs $EDGECNN_DATA_DIR; trains a 1-epoch MNIST run per model first)
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import EDGECNN, mnist_artifacts

COMMANDS = {
    "validate": ["validate", "{art}", "--precisions", "int8"],
    "explain --no-alone": ["explain", "{art}", "--no-alone"],
    "explain": ["explain", "{art}"],
}


def _timed(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([EDGECNN, *args], check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="cnn,mobilenet")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as folder:
        tmp = Path(folder)
        for model in args.models.split(","):
            art = mnist_artifacts(tmp, model=model)
            layers = len(json.loads(subprocess.run([EDGECNN, "explain", str(art), "--no-alone", "--json"], check=True,
                                                   capture_output=True, text=True).stdout)["graph"])
            seconds: dict[str, list[float]] = {name: [] for name in COMMANDS}
            for _ in range(args.repeat):  # in turn, so that a slow spell of the machine hits each alike
                for name, command in COMMANDS.items():
                    seconds[name].append(_timed([a.format(art=art) for a in command]))
            base = statistics.median(seconds["validate"])
            print(f"{model} on MNIST ({layers} graph layers), median of {args.repeat}:")
            for name, secs in seconds.items():
                print(f"  {name:20s} {statistics.median(secs):7.1f} s  {statistics.median(secs) / base:5.2f}x validate")


if __name__ == "__main__":
    main()

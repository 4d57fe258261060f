"""Export benchmark: seconds per format and precision, and the wall time of one whole
`edgecnn export --int8` (all six artifacts, process start and imports included).

Usage: python benchmarks/export.py [RUN_DIR ...]
With no run folder it first trains a 1-epoch MNIST run per framework (needs
$EDGECNN_DATA_DIR); the export cost does not depend on how long a run trained.
Each run is exported --repeat times (default 3) and medians are printed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import EDGECNN, mnist_run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="edgecnn-bench-"))
    runs = [Path(r) for r in args.runs]
    if not runs:
        runs = [mnist_run(tmp / f"{fw}-mnist", fw) for fw in ("torch", "tf")]
    for run in runs:
        framework = json.loads((run / "run.json").read_text())["framework"]
        walls, per = [], {}
        for i in range(args.repeat):
            out = tmp / f"arts-{run.name}-{i}"
            t = time.perf_counter()
            subprocess.run([EDGECNN, "export", str(run), "--int8", "--out", str(out), "--json"],
                           check=True, capture_output=True)
            walls.append(time.perf_counter() - t)
            for a in json.loads((out / "manifest.json").read_text())["artifacts"]:
                per.setdefault((a["format"], a["precision"]), []).append(a["seconds"])
        print(f"run {run} (trained in {framework}), median of {args.repeat}:")
        for (fmt, prec), secs in per.items():
            print(f"  {fmt:7s} {prec:5s} {statistics.median(secs):6.2f} s")
        print(f"  converters total {sum(statistics.median(s) for s in per.values()):6.2f} s; "
              f"whole `edgecnn export --int8` command {statistics.median(walls):6.2f} s (target <= 60 s)")


if __name__ == "__main__":
    main()

"""The zoo on a real dataset: train each model in each framework, export every format
and precision, validate them all, and print the README's tables.

Each step goes through the installed CLI, as a user runs it, and is skipped when its
output is already in --work (so a long run can be resumed, and the tables re-printed):
WORK/FW-MODEL (run folder and FW-MODEL.json), WORK/art-FW-MODEL (artifacts),
WORK/val-FW-MODEL.json (validate --json). Latency is p50 at batch 1, one thread, on this
machine; the sizes are the files'.

Usage: python benchmarks/zoo.py [--dataset fashion-mnist] [--epochs 10]
       [--models cnn,mobilenet,resnet] [--frameworks torch,tf] [--work DIR]
(needs $EDGECNN_DATA_DIR or --data-dir for MNIST-style datasets)
"""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from common import EDGECNN
from edgecnn import converters
from edgecnn.runtime import runner_class
from edgecnn.toolchain.export import ALL_PRECISIONS


def _cli(args: list, out: Path) -> dict:
    """Run the CLI with --json; its JSON, kept in `out` (an empty or broken one, from a
    step that was stopped, is run again)."""
    try:
        return json.loads(out.read_text())
    except (OSError, ValueError):
        pass
    proc = subprocess.run([EDGECNN, *map(str, args), "--json"], capture_output=True, text=True)
    try:  # 1 with a result: a gate failed, which the tables show
        if proc.returncode not in (0, 1):
            raise ValueError
        doc = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit(f"edgecnn {' '.join(map(str, args[:2]))} failed: {proc.stderr.strip()[-500:]}") from None
    out.write_text(proc.stdout)
    return doc


def run_one(work: Path, fw: str, model: str, dataset: str, epochs: int, data_dir) -> tuple[dict, dict, dict]:
    name = f"{fw}-{model}"
    extra = ["--data-dir", data_dir] if data_dir else []
    trained = _cli(["train", "--framework", fw, "--dataset", dataset, "--model", model, "--epochs", epochs,
                    "--out", work / name, "--force", *extra], work / f"{name}.json")
    manifest = _cli(["export", work / name, "--formats", ",".join(converters.FORMATS),
                     "--precisions", ",".join(ALL_PRECISIONS), "--out", work / f"art-{name}", "--force", *extra],
                    work / f"art-{name}.json")
    validated = _cli(["validate", work / f"art-{name}", *extra], work / f"val-{name}.json")
    return trained, manifest, validated


def rows_of(validated: dict, fmt: str, precision: str) -> dict | None:
    return next((r for r in validated["results"] if r["format"] == fmt and r["precision"] == precision), None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--models", default="cnn,mobilenet,resnet")
    ap.add_argument("--frameworks", default="torch,tf")
    ap.add_argument("--work", default="runs/zoo")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = {(fw, m): run_one(work, fw, m, args.dataset, args.epochs, args.data_dir)
               for fw in args.frameworks.split(",") for m in args.models.split(",")}

    int8 = [f for f in converters.FORMATS if "int8" in converters.converter(f).PRECISIONS]
    print(f"\n{args.dataset}, seed 0, {args.epochs} epochs; int8 files: size, and p50 at batch 1\n")
    print("| framework | model | params | MACs | test accuracy | "
          + " | ".join(f"int8 {runner_class(f).title}" for f in int8) + " |")
    print("| --- | --- | ---: | ---: | ---: |" + " ---: |" * len(int8))
    for (fw, m), (trained, _, val) in results.items():
        cells = [f"{r['size_bytes'] / 1024:.0f} KB, {r['latency_ms']['p50']:.3f} ms" if r and r.get("latency_ms")
                 else "not made" for r in (rows_of(val, f, "int8") for f in int8)]
        print(f"| {fw} | {m} | {trained['params']:,} | {trained['macs'] / 1e6:.2f} M | "
              f"{100 * trained['test_accuracy']:.2f} % | " + " | ".join(cells) + " |")

    print("\n| framework | model | artifacts passing | fp32: least agreement, largest abs diff | "
          "int8 accuracy drop (points) and agreement, per format |")
    print("| --- | --- | ---: | --- | --- |")
    for (fw, m), (_, _, val) in results.items():
        rows = val["results"]
        passing = sum(r["status"] == "pass" for r in rows)
        fp32 = [r for r in rows if r["precision"] == "fp32"]
        int8 = [r for r in rows if r["precision"] == "int8"]
        fid = (f"{100 * min(r['agreement'] for r in fp32):.2f} %, "
               f"{max(r['max_abs_diff'] for r in fp32):.1e}")
        drops = ", ".join(f"{r['format']} {r['accuracy_drop']:+.2f} / {100 * r['agreement']:.2f} %" for r in int8)
        print(f"| {fw} | {m} | {passing} of {len(rows)} | {fid} | {drops} |")


if __name__ == "__main__":
    main()

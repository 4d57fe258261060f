"""Calibrate the Pi latency estimates against published Raspberry Pi latencies.

MobileNet v1 and v2 (Keras applications, 224x224x3, width 1.0) are rebuilt with random
weights, as latency does not depend on their values, and converted by TFLite's own
converter to fp32 and int8 (calibrated on random images). Each is counted on the
emulated Cortex-A72 and Cortex-A76 exactly as `validate` counts an artifact (one
warmed inference, the median of 3, one thread) and turned into milliseconds by the
core's model (toolchain/pi_latency.py) at the clock of each published entry.

One correction per core is fitted: the geometric mean of published / modelled over that
core's comparable single-thread entries. Each entry is then predicted by the correction
fitted on the core's other entries (leave-one-out); the largest of those errors is the
band every estimate on that core is stated with. An entry that is not comparable (its
"check" says why) is left out of the fit and shown with its error. Writes toolchain/pi_calibration.json, which every
estimate reads, and prints the README's calibration table.

Usage: python benchmarks/pi_calibration.py [--work DIR] [--write]
(without --write it prints the table and leaves pi_calibration.json as it is)
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from edgecnn.runtime import RUNNERS, runner_class
from edgecnn.toolchain import pi_latency
from edgecnn.toolchain.targets import EmulatedTarget

# counted on LiteRT, whose XNNPACK kernels are those of the published XNNPACK numbers
COUNTED = next(f for f in RUNNERS if runner_class(f).runtime == "LiteRT")

# Published single-thread latencies on real boards (ms). Multi-thread entries are not
# used: counting runs one thread. Runtimes differ from the one counted here (LiteRT
# with XNNPACK); the spread this brings is part of the leave-one-out error.
# An entry that is not comparable is shown beside the fit, with its error, and says why
# it is left out ("check").
NCNN_FP16 = ("ncnn computes fp32 models in fp16 on the A76 (ARMv8.2), with twice the lanes of an fp32 FMLA: "
             "its MobileNet v1 time, 20.3 ms, is below the 29.6 ms that the A76's fp32 peak allows")
PUBLISHED = [
    {"board": "pi4", "ghz": 1.5, "model": "mobilenet_v1", "precision": "fp32", "ms": 312.0,
     "runtime": "XNNPACK end2end-bench, 64-bit Ubuntu",
     "source": "https://github.com/google/XNNPACK/issues/814",
     "check": "one user's build, which the same thread reports did not reproduce XNNPACK's own Pi 4 figures; "
              "2.5x ncnn's time for the same network on the same board"},
    {"board": "pi4", "ghz": 1.8, "model": "mobilenet_v1", "precision": "fp32", "ms": 124.3,
     "runtime": "ncnn benchncnn", "source": "https://github.com/Tencent/ncnn/blob/master/benchmark/README.md"},
    {"board": "pi4", "ghz": 1.8, "model": "mobilenet_v1", "precision": "int8", "ms": 84.8,
     "runtime": "ncnn benchncnn", "source": "https://github.com/Tencent/ncnn/blob/master/benchmark/README.md"},
    {"board": "pi4", "ghz": 1.8, "model": "mobilenet_v2", "precision": "fp32", "ms": 93.5,
     "runtime": "ncnn benchncnn", "source": "https://github.com/Tencent/ncnn/blob/master/benchmark/README.md"},
    {"board": "pi5", "ghz": 2.4, "model": "mobilenet_v1", "precision": "fp32", "ms": 20.3,
     "runtime": "ncnn benchncnn (fp16 arithmetic on the A76)",
     "source": "https://github.com/Tencent/ncnn/blob/master/benchmark/README.md", "check": NCNN_FP16},
    {"board": "pi5", "ghz": 2.4, "model": "mobilenet_v1", "precision": "int8", "ms": 14.4,
     "runtime": "ncnn benchncnn", "source": "https://github.com/Tencent/ncnn/blob/master/benchmark/README.md"},
    {"board": "pi5", "ghz": 2.4, "model": "mobilenet_v2", "precision": "fp32", "ms": 16.4,
     "runtime": "ncnn benchncnn (fp16 arithmetic on the A76)",
     "source": "https://github.com/Tencent/ncnn/blob/master/benchmark/README.md", "check": NCNN_FP16},
]
SIZE = 224


def build(name: str, folder: Path) -> dict:
    """The model's fp32 and int8 LiteRT files, and its MACs."""
    import tensorflow as tf
    tf.keras.utils.set_random_seed(0)
    app = {"mobilenet_v1": tf.keras.applications.MobileNet, "mobilenet_v2": tf.keras.applications.MobileNetV2}[name]
    model = app(input_shape=(SIZE, SIZE, 3), weights=None, classes=1000)
    macs = _macs(model)
    files = {}
    for precision in ("fp32", "int8"):
        path = folder / f"{name}.{precision}{runner_class(COUNTED).suffix}"
        if not path.is_file():
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            if precision == "int8":
                rng = np.random.default_rng(0)
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
                conv.representative_dataset = lambda: ([rng.uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)]
                                                       for _ in range(8))
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            path.write_bytes(conv.convert())
        files[precision] = path
    return {"files": files, "macs": macs}


def _macs(model) -> int:
    """Multiply-accumulates of the Keras model's convolutions and dense layers."""
    import tensorflow as tf
    total = 0
    for layer in model.layers:
        if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.DepthwiseConv2D)):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            per_out = kh * kw * (1 if isinstance(layer, tf.keras.layers.DepthwiseConv2D) else c_in)
            total += h * w * c_out * per_out
        elif isinstance(layer, tf.keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def count(path: Path, core: str, work: Path) -> dict:
    """One artifact counted on one emulated core, as validate counts it."""
    work.mkdir(parents=True, exist_ok=True)
    data = work / "sample.npz"
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
    np.savez(data, sample=image, images=image, labels=np.zeros(1, np.int64))
    target = EmulatedTarget(core)
    why = target.why_no_estimate()
    if why:
        raise SystemExit(f"pi_calibration: cannot count on {core}: {why}")
    t = time.perf_counter()
    result = target.run({"artifact": str(path.resolve()), "format": COUNTED, "data": str(data),
                         "scaling": {"divide_by": 127.5, "mean": [1.0, 1.0, 1.0], "std": [1.0, 1.0, 1.0]}, "count_only": True}, work)
    if result.get("status") != "ok" or "cycles" not in result.get("pi_count", {}):
        raise SystemExit(f"pi_calibration: counting {path.name} on {core} failed: "
                         f"{result.get('reason') or result.get('pi_count')}")
    return dict(result["pi_count"], seconds=round(time.perf_counter() - t, 1))


def fit(entries: list[dict]) -> tuple[float, list[float]]:
    """The correction (geometric mean of published / modelled) and each entry's
    leave-one-out error, signed: (predicted - published) / published."""
    logs = [math.log(e["ms"] / e["model_ms"]) for e in entries]
    correction = math.exp(sum(logs) / len(logs))
    errors = []
    for i, e in enumerate(entries):
        rest = logs[:i] + logs[i + 1:]
        c = math.exp(sum(rest) / len(rest)) if rest else float("nan")
        errors.append(e["model_ms"] * c / e["ms"] - 1)
    return correction, errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/pi-calibration")
    ap.add_argument("--write", action="store_true", help="Write toolchain/pi_calibration.json.")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    counted_path = work / "counted.json"
    counted = json.loads(counted_path.read_text()) if counted_path.is_file() else {}
    models = {}
    for name in sorted({e["model"] for e in PUBLISHED}):
        models[name] = build(name, work)
    for name, m in models.items():
        for precision, path in m["files"].items():
            for core in pi_latency.CORES:
                key = f"{name}.{precision}.{core}"
                if key not in counted:
                    counted[key] = dict(count(path, core, work / key), bytes=path.stat().st_size, macs=m["macs"])
                    counted_path.write_text(json.dumps(counted, indent=1))
                c = counted[key]
                print(f"{key}: {c['instructions']:,.0f} instructions (spread {c['spread']:.4%}), "
                      f"{c['cycles']:,} cycles, counted in {c['seconds']} s", flush=True)
    cores = {}
    rows = []
    for core, spec in pi_latency.CORES.items():
        boards = {name for name, _, _ in spec["boards"]}
        entries = []
        for e in PUBLISHED:
            if e["board"] not in boards:
                continue
            c = counted[f"{e['model']}.{e['precision']}.{core}"]
            model_ms = round(pi_latency.model_ms(core, c["cycles"], c["bytes"], e["ghz"]), 4)
            bound = c["macs"] / (spec["macs_per_cycle"][pi_latency.peak_kind(e["precision"])] * e["ghz"] * 1e6)
            entries.append(dict(e, model_ms=model_ms, lower_bound_ms=round(bound, 2)))
        fitted = [e for e in entries if "check" not in e]
        correction, errors = fit(fitted)
        loo = dict(zip(map(id, fitted), errors))
        for e in entries:
            predicted = e["model_ms"] * correction
            rows.append(dict(e, core=core, predicted_ms=round(predicted, 1),
                             loo_error=None if id(e) not in loo or math.isnan(loo[id(e)]) else round(loo[id(e)], 4),
                             error=round(predicted / e["ms"] - 1, 4)))
        defined = [abs(x) for x in errors if not math.isnan(x)]
        cores[core] = {"correction": round(correction, 4), "entries": len(fitted),
                       "loo_errors": [round(x, 4) for x in defined],
                       **({"band": round(max(defined), 4)} if defined else {})}
    # a core with one comparable entry has no leave-one-out error of its own: it is
    # given the error of the core that has one, and says so
    lent = max((c for c in cores.values() if "band" in c), key=lambda c: c["entries"])
    donor = next(k for k, c in cores.items() if c is lent)
    for core, c in cores.items():
        if "band" not in c:
            c.update(band=lent["band"], band_from=donor)
    print("\n| board | model | precision | published ms (runtime) | modelled ms | calibrated ms | "
          "leave-one-out | lower bound |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        err = (f"{r['loo_error']:+.0%}" if r["loo_error"] is not None
               else f"not fitted ({r['error']:+.0%})" if "check" in r else "only entry")
        print(f"| {r['board']} @ {r['ghz']} GHz | {r['model']} | {r['precision']} | {r['ms']} ({r['runtime']}) | "
              f"{r['model_ms']:.1f} | {r['predicted_ms']:.1f} | {err} | {r['lower_bound_ms']:.1f} |")
    for r in rows:
        if "check" in r:
            print(f"not fitted: {r['board']} {r['model']} {r['precision']} {r['ms']} ms: {r['check']}")
    for core, c in cores.items():
        print(f"{core}: correction {c['correction']:.3f} from {c['entries']} entries, band ±{c['band']:.0%} "
              + (f"(lent by {c['band_from']}: one entry has no leave-one-out error)" if "band_from" in c
                 else "(the largest leave-one-out error)"))
    doc = {"cores": cores, "entries": rows, "counted": counted, "cycle_model": pi_latency.cycle_model(),
           "made_by": "benchmarks/pi_calibration.py"}
    if args.write:
        pi_latency.CALIBRATION.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {pi_latency.CALIBRATION}")


if __name__ == "__main__":
    main()

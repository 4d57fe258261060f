"""One artifact, one process: `python -m edgecnn.runtime.harness JOB.json`.

A target runs this wherever the artifact is to be judged (here, under emulation, or on
a device) so that each artifact gets a fresh process: its peak RSS is its own, and a
runtime that crashes takes down only its own row. The job is JSON:

    {"artifact": PATH, "format": "tflite", "threads": 1,
     "data": NPZ (sample, images, labels[, reference]),
     "scaling": {"divide_by": 255.0[, "mean": [per channel], "std": [per channel]]},
     "bench": {"min_runs": 200, "min_seconds": 1.0, "warmup": 20}, "out": PATH,
     "logits_out": PATH (optional: the logits as .npy, to compare machines),
     "taps_out": PATH (optional: instead of timing and scoring, every intermediate
                       tensor the runtime exposes for "images", saved by save_taps),
     "predict": true (optional: instead of timing and scoring, only the logits of
                      "images", to "logits_out"),
     "count": N (optional: after timing and scoring, N regions of inferences of
                 "sample", the runner's count_window of them in each, each region
                 between marks that an instruction-counting emulator reads; see
                 mark_region; the result then has "regions" and "inferences_per_region"),
     "count_only": true (optional: with "count", nothing else: not timed, not scored)}

and the result, written to "out" (stdout when absent), is one JSON object whose
"status" is "ok", "skipped" (the runtime is not installed: reason and hint) or "error"
(the artifact cannot be run: reason). The exit status is 0 whenever a result was written.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile

import numpy as np

from . import cpu, devicestate, runner_for
from .bench import bench
from .evaluate import evaluate, infer_all, scale
from .runner import ArtifactError, RuntimeMissing


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux it is VmHWM of /proc/self/status,
    because getrusage's ru_maxrss survives exec: a harness started by a big parent would
    report the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes on macOS, KiB elsewhere


def check_input(runner, image_hwc) -> None:
    spec = runner.input_spec
    dims = spec.shape[1:4]
    hwc = dims if spec.layout == "NHWC" else [dims[1], dims[2], dims[0]] if len(dims) == 3 else dims
    if len(hwc) == 3 and all(d > 0 for d in hwc) and list(hwc) != list(image_hwc):
        raise ArtifactError(f"{runner.path.name} takes {'x'.join(map(str, hwc))} inputs but the "
                            f"images are {'x'.join(map(str, image_hwc))}")


def run_job(job: dict) -> dict:
    result = {"python": platform.python_version(), "machine": platform.machine(),
              "threads": int(job.get("threads", 1)), "cpu": cpu.describe()}
    runner = runner_for(job["format"], job["artifact"], result["threads"])
    result["runtime"] = runner.runtime
    try:
        with np.load(job["data"]) as data:
            if job.get("taps_out"):  # explain: the layers' outputs, nothing timed or scored
                images = scale(data["images"], job["scaling"])
                check_input(runner, images.shape[1:])
                taps = runner.taps(images)
                if taps is None:
                    result.update(exposed=False, no_taps=runner.no_taps)
                else:
                    save_taps(job["taps_out"], taps)
                    result.update(exposed=True, tensors=len(taps))
                return dict(result, status="ok", runtime_version=runner.version)
            if job.get("predict"):  # predict: the answers, nothing timed or scored
                images = data["images"]
                check_input(runner, images.shape[1:])
                save_atomic(job["logits_out"], infer_all(runner, images, job["scaling"]))
                if job.get("count"):  # the first image, counted as a validate row's sample is
                    result.update(count_regions(runner, scale(images[:1], job["scaling"]), int(job["count"])))
                return dict(result, status="ok", runtime_version=runner.version)
            sample = scale(data["sample"], job["scaling"])
            check_input(runner, sample.shape[1:])
            if job.get("count_only"):
                result.update(count_regions(runner, sample, int(job["count"])))
                return dict(result, status="ok", runtime_version=runner.version)
            b = job.get("bench", {})
            before = devicestate.read()
            result.update(bench(runner, sample, **b))
            result["device_state"] = devicestate.judge(before, devicestate.read())
            result["peak_rss_mb"] = round(peak_rss_mb(), 1)
            reference = data["reference"] if "reference" in data.files else None
            result.update(evaluate(runner, data["images"], data["labels"], job["scaling"], reference,
                                   keep_logits=True, classes=job.get("classes")))
            logits = result.pop("logits")
            if job.get("logits_out"):
                save_atomic(job["logits_out"], logits)
            if job.get("count"):  # last, so that nothing else runs in a counted region
                result.update(count_regions(runner, sample, int(job["count"])))
    except RuntimeMissing as e:
        return dict(result, status="skipped", reason=f"{e.runtime} is not installed", hint=e.hint)
    except ArtifactError as e:
        return dict(result, status="error", reason=str(e))
    except Exception as e:  # a runtime's own error on a file that loaded: report, not crash
        return dict(result, status="error",
                    reason=f"{runner.path.name}: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
    result["runtime_version"] = runner.version
    return dict(result, status="ok")


# the counted-region mark: lseek calls on this descriptor, which the counting plugin
# (toolchain/qemu_count.c, built with it) and emulated setup's check read from here
MARK_FD = -4242


def mark_region(start: bool) -> None:
    """Start or end a counted region: an lseek on a descriptor that cannot exist, which
    fails at once (EBADF) everywhere and is seen by the counting emulator's plugin."""
    try:
        os.lseek(MARK_FD, 1 if start else 2, 0)
    except OSError:
        pass


def count_regions(runner, sample, regions: int, warmup: int = 3) -> dict:
    """Inferences as the benchmark times them (the runtime's run on a prepared input),
    `runner.count_window` of them in each region, after a warm-up that allocates and
    caches; what the result records of them."""
    import gc
    runner.load()
    native = runner.prepare(sample)
    for _ in range(warmup):
        runner.run(native)
    window = runner.count_window
    gc.disable()  # a collection that falls inside one region and not another is not the model's
    try:
        for _ in range(regions):
            mark_region(True)
            for _ in range(window):
                runner.run(native)
            mark_region(False)
    finally:
        gc.enable()
    return {"regions": regions, "inferences_per_region": window}


def umask() -> int:
    """The process's umask, read without changing it (Linux's /proc; else set and restored)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1], 8) for ln in f if ln.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o22)
        os.umask(mask)
        return mask


def mkstemp(folder: str, name: str, suffix: str) -> tuple[int, str]:
    """A temporary file beside `name` whose mode follows the umask, as an ordinary new
    file's does (tempfile's are 0600), so that renamed into place it reads as any other."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=folder)
    os.fchmod(fd, 0o666 & ~umask())
    return fd, tmp


def write_atomic(path: str, text) -> None:
    """Write text (or bytes) to a temporary name in the same folder, then rename into place."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = mkstemp(folder, os.path.basename(path), ".partial")
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_atomic(path: str, array: np.ndarray) -> None:
    import io
    buf = io.BytesIO()
    np.save(buf, array)
    write_atomic(path, buf.getvalue())


def save_taps(path: str, taps: list[tuple[list[str], np.ndarray]]) -> None:
    """Runner.taps' list as one .npz: the tensors in order, and their layer names as JSON."""
    import io
    buf = io.BytesIO()
    np.savez(buf, scopes=np.array(json.dumps([scopes for scopes, _ in taps])),
             **{f"t{i}": value for i, (_, value) in enumerate(taps)})
    write_atomic(path, buf.getvalue())


def load_taps(path) -> list[tuple[list[str], np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        scopes = json.loads(str(z["scopes"]))
        return [(list(s), z[f"t{i}"]) for i, s in enumerate(scopes)]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edgecnn.runtime.harness JOB.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        job = json.load(f)
    text = json.dumps(run_job(job))
    if job.get("out"):
        write_atomic(job["out"], text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

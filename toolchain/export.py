"""`edgecnn export`: a run folder in, a folder of artifacts and manifest.json out.

The manifest is the contract between export and validate: the model (spec, source
framework, dataset, classes, input shape and scaling, training metrics, seed), the
calibration, the weight bridge's proof, the fp32 reference logits on the test split
(reference.npz), and one entry per artifact: file, format, precision, status, sha256,
bytes, converter and library versions, input and output tensors (layout, dtype,
quantization) and notes.
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgecnn import converters
from edgecnn.converters import CALIBRATION, FLOAT_LAYERS, GRANULARITY, ROUNDING, bridge, converter
from edgecnn.runtime import runner_class, runner_for
from edgecnn.runtime.evaluate import scale
from edgecnn.runtime.quiet import quiet

from . import __version__, convert, data, models, native, outdir, preprocess, repair
from .columns import columns
from .errors import BadInput, brief, disk_full
from .runs import Run

MANIFEST_SCHEMA = 2  # 2: "bridge" is a list of proofs, one per twin copied
ALL_PRECISIONS = converters.PRECISIONS
MIN_CALIB, WARN_CALIB, DEFAULT_CALIB = 10, 100, 500


def parse_list(text: str, allowed, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise BadInput(f"unknown {what} {', '.join(map(repr, bad)) or repr(text)}; "
                       f"choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def plan(formats: list[str], precisions: list[str]) -> list[tuple[str, str]]:
    """Every (format, precision) pair that the format supports, in a stable order."""
    pairs = [(f, p) for f in formats for p in ALL_PRECISIONS
             if p in precisions and p in converter(f).PRECISIONS]
    for p in precisions:
        if not any(pp == p for _, pp in pairs):
            raise BadInput(f"precision {p!r} is not supported by {', '.join(formats)}")
    return pairs


def check_reachable(spec, formats) -> None:
    """A spec that only the NumPy twin has reaches only the formats made from it."""
    if models.numpy_only(spec):
        other = [f for f in formats if f not in converters.made_from("numpy")]
        if other:
            raise BadInput(f"the {spec.arch} spec exists only in NumPy: it exports to "
                           f"{', '.join(converters.made_from('numpy'))}, not {', '.join(dict.fromkeys(other))}")


def calib_count(samples: int | None, n_train: int) -> int:
    """How many training images calibrate int8: `samples`, or the default (500), either
    clamped, with a warning, to a smaller training set. Checked before any training."""
    if samples is None:  # the default: 500, or every training image of a smaller set
        samples = min(DEFAULT_CALIB, n_train)
    if samples > n_train:
        print(f"edgecnn: warning: --calib-samples {samples} is more than the {n_train} training images; "
              f"calibrating on all {n_train}", file=sys.stderr)
        samples = n_train
    if samples < MIN_CALIB:
        raise BadInput(f"--calib-samples {samples} is too few; int8 calibration needs at least {MIN_CALIB}")
    if samples < WARN_CALIB:
        print(f"edgecnn: warning: {samples} calibration images is few; int8 ranges may be poor "
              f"(500 is the default)", file=sys.stderr)
    return samples


def calibration_images(ds, samples: int, seed: int, scaling: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    samples = calib_count(samples, len(ds.x_train))
    idx = np.sort(np.random.default_rng(seed).choice(len(ds.x_train), samples, replace=False))
    return idx, scale(ds.x_train[idx], scaling or preprocess.DEFAULT)  # the tests call it without


def _io_entry(spec, shape_hwc, layout) -> dict:
    h, w, c = shape_hwc
    d = spec.to_json()
    d["shape"] = [-1, h, w, c] if layout == "NHWC" else [-1, c, h, w]
    d["layout"] = layout
    return d


def float_chains(graph, names, precisions) -> dict[str, list[str]]:
    """--float-layers: each named conv2d or dense layer, with what the converters fold
    into it (its batchnorm and activation), to keep in float in every int8 artifact."""
    if not names:
        return {}
    if "int8" not in precisions:
        raise BadInput("--float-layers keeps layers of an int8 artifact in float; add --int8")
    weighted = graph.weighted_layers()
    bad = [n for n in names if n not in weighted]
    if bad:
        raise BadInput(f"--float-layers: {bad[0][:40]!r} is not a conv2d or dense layer of this model; "
                       f"its layers are {', '.join(weighted)}")
    return {n: graph.folded_chain(n) for n in names}


def export(run_dir, formats, precisions, out, force=False, calib_samples=None, options: dict | None = None,
           data_dir=None, log=None, float_layers=(), calibration: str | None = None,
           granularity: str | None = None, max_accuracy_drop: float | None = None,
           rounding: str | None = None) -> tuple[dict, int]:
    """`options`: the converters' own options by name (converters.options()); the rest
    take their defaults. `float_layers`: conv2d and dense layers that every int8
    artifact keeps in float (float_chains). `calibration`: the range estimator each int8
    quantizer uses where it offers it (converters.calibration_for); None for their own.
    `granularity`: per-channel (None: the default) or per-tensor int8 weights.
    `rounding`: how int8 weights are rounded onto their scales, gptq (None: the default)
    or nearest (converters.ROUNDINGS).
    `max_accuracy_drop`: points of test accuracy an int8 artifact may lose before more of
    its layers are kept in float (repair.fit)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    known = converters.options()
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise BadInput(f"unknown export option {', '.join(unknown)}; the converters take {', '.join(known) or 'none'}")
    options = {name: opt.default for name, opt in known.items()} | dict(options or {})
    out = Path(out)
    pairs = plan(formats, precisions)
    run = Run(run_dir)
    if run.native:
        if float_layers:
            raise BadInput("--float-layers names layers of edgecnn's graph; this model was imported in its own "
                           "framework, without one")
        pairs = _native_plan(run, pairs)
    else:
        check_reachable(run.spec, formats)
        pairs = [(f, p, None) for f, p in pairs]
    options[FLOAT_LAYERS] = {} if run.native else float_chains(run.spec.graph, list(float_layers), precisions)
    if calibration is not None:
        if calibration not in converters.calibrations():
            raise BadInput(f"unknown calibration {str(calibration)[:40]!r}; the int8 quantizers offer "
                           f"{', '.join(converters.calibrations())}")
        if "int8" not in precisions:
            raise BadInput("--calibration sets how int8 artifacts are calibrated; add --int8")
    options[CALIBRATION] = calibration
    if granularity is not None:
        if granularity not in converters.GRANULARITIES:
            raise BadInput(f"unknown weight granularity {str(granularity)[:40]!r}; choose "
                           f"{' or '.join(converters.GRANULARITIES)}")
        if "int8" not in precisions:
            raise BadInput("--weight-granularity sets how int8 weights are scaled; add --int8")
    options[GRANULARITY] = granularity or converters.GRANULARITIES[0]
    if rounding is not None:
        if rounding not in converters.ROUNDINGS:
            raise BadInput(f"unknown weight rounding {str(rounding)[:40]!r}; choose {' or '.join(converters.ROUNDINGS)}")
        if "int8" not in precisions:
            raise BadInput("--weight-rounding sets how int8 weights are rounded; add --int8")
        if run.native:
            raise BadInput("--weight-rounding rounds the layers of edgecnn's graph; this model was imported in "
                           "its own framework, without one")
    options[ROUNDING] = rounding or ("nearest" if run.native else converters.ROUNDINGS[0])
    budget = repair.check_budget(max_accuracy_drop, precisions, run.native)
    outdir.check_free(out, force, "artifact folder")
    # the lock on `out` is taken first: a second export there fails now, not after converting
    with outdir.staged(out, force, "artifact folder") as tmp:
        return _export_into(tmp, run, run_dir, pairs, calib_samples, options, data_dir, log, budget)


def _native_plan(run: Run, pairs):
    """For a model kept in its own framework: (format, precision, why it cannot be made or
    None) for each pair asked for; BadInput when none can be made."""
    kind = native.KINDS[run.framework]
    planned = [(f, p, converters.not_native(f, kind, p)) for f, p in pairs]
    if all(why for *_, why in planned):
        f, p, why = planned[0]
        raise BadInput(f"none of the formats asked for can be made from this model ({f} {p}: {why})")
    return planned


def _export_into(tmp: Path, run: Run, run_dir, pairs, calib_samples, options, data_dir, log,
                 budget: float | None = None) -> tuple[dict, int]:
    """`pairs`: (format, precision, why it cannot be made or None). `budget`: the
    accuracy drop, in points, that int8 artifacts are repaired to fit."""
    seed = run.seed
    try:
        ds = data.load(run.dataset, data_dir or run.data_dir, resize=run.resize)
    except BadInput as e:
        raise BadInput(f"the run's dataset is needed for calibration and reference outputs: {e}") from None
    if ds.input_shape != run.spec.input_shape or ds.classes != run.spec.classes:
        raise BadInput(f"dataset {run.dataset!r} has input {ds.input_shape} and {ds.num_classes} classes, "
                       f"but the run was trained on {run.spec.input_shape} and {run.spec.num_classes}")
    calib_idx, calib = calibration_images(ds, calib_samples, seed, run.spec.scaling) if any(
        p in converters.CALIBRATED and not why for _, p, why in pairs) else (np.array([], int), None)
    calib_info = None if calib is None else {
        "samples": int(len(calib)), "method": "random training images", "seed": seed}
    x_test = scale(ds.x_test, run.spec.scaling)

    # the source model, and each other twin a format needs, copied through the bridge
    # and proven against the source before anything is converted
    if run.native:
        source, model = run.load_twin()
        made, bridge_info = {source: model}, []
        reference = native.logits(source, model, x_test)
    else:
        source, model, made, bridge_info = convert.twins(
            run, {converter(f).TWIN for f, _, _ in pairs}, x_test, log)
        reference = bridge.logits(source, model, x_test)

    test = repair.Images(ds.x_test, ds.y_test, run.spec.scaling, reference)
    rank_on = None if calib is None or budget is None else repair.Images(
        ds.x_train[calib_idx], ds.y_train[calib_idx], run.spec.scaling, bridge.logits(source, model, calib))
    entries = []
    failed = 0
    rounders: dict = {}  # GPTQ's integers, worked out once for every int8 format
    for fmt, precision, unavailable in pairs:
        name = f"model.{precision}{runner_class(fmt).suffix}"
        path = tmp / name
        entry = {"file": name, "format": fmt, "precision": precision}
        if unavailable:  # never faked: listed with the reason
            entry.update(status=converters.UNAVAILABLE, reason=unavailable, seconds=0.0)
            log(f"exporting {fmt} {precision}: unavailable ({unavailable})")
            entries.append(entry)
            continue
        log(f"exporting {fmt} {precision} ...")
        t = time.perf_counter()
        own = convert.artifact_options(fmt, precision, options)
        # fp32 converters only trace with the images: any real ones will do
        with convert.maker(run, source, model, made, calib if calib is not None else x_test[:8], fmt,
                           precision, own, rounders) as make:
            try:
                meta = make(options[FLOAT_LAYERS], path)
                record = None
                if budget is not None and precision == "int8":
                    record, repaired = repair.fit(
                        fmt, make, path, run.spec.graph.weighted_layers(), options[FLOAT_LAYERS],
                        run.spec.graph.folded_chain, budget, test, rank_on, log)
                    meta = repaired or meta
                with quiet():
                    runner = runner_for(fmt, path).load()
                    concerns = runner.concerns()
                for concern in concerns:
                    log(f"exporting {fmt} {precision}: warning: {concern}")
                seconds = time.perf_counter() - t
                sha, = outdir.file_digests(path, "sha256")
                entry.update(
                    status="ok", sha256=sha, bytes=path.stat().st_size, seconds=round(seconds, 3),
                    converter=meta["converter"], versions=meta["versions"],
                    input=_io_entry(runner.input_spec, run.spec.input_shape, meta["layout"]),
                    output=dict(runner.output_spec.to_json(), shape=[-1, run.spec.num_classes]),
                    calibration=(_calibration_entry(calib_info, own[CALIBRATION], options[CALIBRATION])
                                 if precision in converters.CALIBRATED else None),
                    options=own,
                    notes=meta.get("notes", {}), **({"repair": record} if record else {}))
                if record and not record["met"]:
                    failed += 1  # the artifact is kept, but the budget asked for was not met
                log(f"exporting {fmt} {precision}: ok, {entry['bytes'] / 1024:.0f} KB, {seconds:.1f} s")
            except Exception as e:  # one format failing must not stop the rest
                if disk_full(e):  # but a full disk stops them all: nothing is replaced
                    raise BadInput(f"the disk is full: writing {name} failed ({brief(e, 120)}); "
                                   f"nothing was replaced") from None
                failed += 1
                path.unlink(missing_ok=True)  # a failed int8 never leaves a file behind
                reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                entry.update(status="failed", reason=reason, seconds=round(time.perf_counter() - t, 3))
                log(f"exporting {fmt} {precision}: FAILED ({reason})")
        entries.append(entry)

    np.savez(tmp / "reference.npz", logits=reference.astype(np.float32), labels=ds.y_test)
    ref_sha, = outdir.file_digests(tmp / "reference.npz", "sha256")
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "edgecnn": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "arch": run.spec.arch, "params": run.params, "macs": run.macs,
            "source_framework": run.framework, "run": str(Path(run_dir).resolve()),
            "dataset": run.dataset, "data_dir": ds.read_from or run.data_dir,
            **({"resize": list(run.resize)} if run.resize else {}),
            "test_sha256": ds.test_sha256(), "test_images": int(len(ds.y_test)), "classes": run.spec.classes,
            "input_shape": list(run.spec.input_shape), "scaling": run.spec.scaling,
            "seed": seed, "training": {"test_accuracy": run.metrics.get("test_accuracy"),
                                       "epochs": run.info.get("epochs")},
            # a model kept in its own framework: why it is not edgecnn's graph
            **({"outside_vocabulary": run.info["imported"].get("outside_vocabulary")} if run.native else {}),
        },
        "calibration": None if calib is None else dict(calib_info, indices=calib_idx.tolist()),
        "bridge": bridge_info,  # one proof per twin copied from the source
        "reference": {"file": "reference.npz", "sha256": ref_sha, "samples": int(len(reference)),
                      "accuracy": float((reference.argmax(1) == ds.y_test).mean())},
        "artifacts": entries,
    }
    outdir.write_json(tmp / "manifest.json", manifest)
    return manifest, (1 if failed else 0)


def _calibration_entry(calib_info: dict, ranges: str, asked: str | None) -> dict:
    """An int8 artifact's calibration: the images, the range estimator its quantizer
    used, and the one asked for when the quantizer does not offer it."""
    entry = dict(calib_info, ranges=ranges)
    if asked and asked != ranges:
        entry["asked"] = asked
    return entry


def table(manifest: dict) -> str:
    rows = [("format", "precision", "size", "status", "seconds")]
    for a in manifest["artifacts"]:
        size = f"{a['bytes'] / 1024:,.0f} KB" if a["status"] == "ok" else "-"
        status = a["status"] if a["status"] == "ok" else f"{a['status']}: {a['reason'][:60 if a['status'] == 'failed' else 110]}"
        if a.get("notes", {}).get(FLOAT_LAYERS):
            status += f", float: {', '.join(a['notes'][FLOAT_LAYERS])}"
        calibration = a.get("calibration") or {}
        if calibration.get("asked"):
            status += f", calibration: {calibration['ranges']} ({calibration['asked']} not offered)"
        rows.append((a["format"], a["precision"], size, status, f"{a['seconds']:.1f}"))
    lines = columns(rows)
    for a in manifest["artifacts"]:
        if a.get("repair"):
            lines.append(repair.table(a["format"], a["repair"]))
    return "\n".join(lines)


"""`edgecnn validate`: every artifact of one or more export folders, judged on a target.

Before anything runs, each chosen artifact's size and sha256 are checked against the
manifest and the test split is loaded and matched to the artifacts' input shape. Then
the target runs the runtime harness once per artifact (accuracy, fidelity against the
fp32 reference logits, batch-1 latency, peak RSS), and the gates turn each row into
pass or fail. The result is one JSON-able document that the reports render.
"""
from __future__ import annotations

import platform
import re
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgecnn.converters import FORMATS
from edgecnn.runtime import cpu as cpus, format_of

from . import __version__, crosscheck, data, gates as gating, inspect, layout, outdir, preprocess, stats
from .errors import BadInput, brief
from edgecnn.converters import UNAVAILABLE

from .export import ALL_PRECISIONS as PRECISIONS

RESULTS_SCHEMA = 1
HOST_CPU = cpus.describe()  # this machine's int8 instructions: in every document, and blamed when it deviates
FRAMEWORK_NAMES = {"torch": "PyTorch", "tf": "TensorFlow", "numpy": "NumPy", "onnx": "ONNX"}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(text: str) -> str:
    """A message that quotes a damaged value stays one short line."""
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


class ArtifactFolder:
    """An export folder: its manifest and the entries chosen for this run."""

    def __init__(self, path, formats=FORMATS, precisions=PRECISIONS):
        path = Path(path)
        only = None
        if path.is_file():
            folder = path.parent
            if path.name != "manifest.json":
                only = path.name
        else:
            folder = path
        if not folder.is_dir():
            raise BadInput(f"{path}: no such artifact folder")
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise BadInput(layout.hint(folder, "validate")
                           or f"{folder}: no manifest.json here; make artifacts with `edgecnn export`")
        self.folder, self.manifest = folder, outdir.read_json_object(manifest_path)
        model, entries = self.manifest.get("model"), self.manifest.get("artifacts")
        if not isinstance(model, dict) or not isinstance(entries, list) or not all(
                isinstance(e, dict) for e in entries) or "input_shape" not in model:
            raise BadInput(f"{manifest_path} is not an edgecnn manifest (no model or artifacts)")
        self.model = model
        self._check_fields(manifest_path, model, entries)
        if only is not None and only not in {e["file"] for e in entries}:
            raise BadInput(f"{path}: not listed in {manifest_path}")
        # an unavailable entry was never made (export lists why): there is nothing to run
        self.entries = [e for e in entries if e.get("format") in formats and e.get("precision") in precisions
                        and (only is None or e["file"] == only) and e.get("status") != UNAVAILABLE]

    def _check_fields(self, where: Path, model: dict, entries: list[dict]) -> None:
        """Every field that validate reads has the type it expects: a hand-edited or damaged
        manifest is bad input, named here, and never a crash later on."""
        def bad(what):
            raise BadInput(f"{where}: {_short(what)}")
        shape = model.get("input_shape")
        if not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(d) and d > 0 for d in shape):
            bad(f"model input_shape {shape!r} is not [height, width, channels]")
        try:
            preprocess.check(model.get("scaling", {}), shape[2], "model scaling")
        except BadInput as e:
            bad(str(e))
        for key in ("dataset", "source_framework", "data_dir", "test_sha256"):
            if model.get(key) is not None and not (isinstance(model[key], str) and model[key]):
                bad(f"model {key} {model[key]!r} is not a name")
        classes = model.get("classes")
        if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
            bad("model classes is not a list of names")
        for e in entries:
            name = e.get("file")
            if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..") or "\0" in name:
                bad(f"artifact file {name!r} is not a plain file name")
            for key in ("format", "precision", "status"):
                if not isinstance(e.get(key), str):
                    bad(f"artifact {name} has no {key}")
            if e["status"] == "ok" and not (_is_int(e.get("bytes")) and e["bytes"] >= 0
                                            and isinstance(e.get("sha256"), str)
                                            and re.fullmatch(r"[0-9a-f]{64}", e["sha256"])):
                bad(f"artifact {name} has no valid bytes and sha256")
        reference = self.manifest.get("reference")
        if reference is not None and not (isinstance(reference, dict)
                                          and isinstance(reference.get("file", ""), str)
                                          and isinstance(reference.get("sha256", ""), str)):
            bad("reference is not {'file': name, 'sha256': digest}")

    @property
    def where(self) -> str:
        """What its rows name as their folder: artifacts compared with each other share it."""
        return str(self.folder)

    @property
    def framework(self) -> str:
        fw = self.model.get("source_framework")
        return FRAMEWORK_NAMES.get(fw, fw or self.folder.name)

    def verify(self) -> None:
        """Refuse to run a file that is not the one export wrote."""
        for e in self.entries:
            if e.get("status") != "ok":
                continue
            path = self.folder / e["file"]
            if not path.is_file():
                raise BadInput(f"{path}: listed in the manifest but missing")
            size = path.stat().st_size
            if size != e.get("bytes"):
                raise BadInput(f"{path}: {size:,} bytes but the manifest says {e['bytes']:,}; "
                               f"the file is truncated or replaced, refusing to run it")
            sha, = outdir.file_digests(path, "sha256")
            if sha != e.get("sha256"):
                raise BadInput(f"{path}: sha256 {sha[:16]}... does not match the manifest's "
                               f"{str(e.get('sha256'))[:16]}...; refusing to run it")

    def eval_data(self, ds: data.Dataset, dataset_name: str, path: Path, same_split: bool = True) -> Path:
        """Write the harness's data file, with the fp32 reference logits when `ds` is the
        test split they were made on."""
        shape = tuple(self.model["input_shape"])
        if ds.input_shape != shape:
            raise BadInput(f"{self.folder}: the artifacts take {'x'.join(map(str, shape))} images but "
                           f"dataset {dataset_name!r} has {'x'.join(map(str, ds.input_shape))}" + (
                               f"; pass --resize {shape[0]}x{shape[1]}" if dataset_name.startswith("folder:")
                               and shape[2] == ds.input_shape[2] else ""))
        n_classes = len(self.model.get("classes") or [])
        if n_classes and ds.num_classes != n_classes:
            raise BadInput(f"{self.folder}: the artifacts have {n_classes} classes but dataset "
                           f"{dataset_name!r} has {ds.num_classes}")
        arrays = {"sample": ds.x_test[:1], "images": ds.x_test, "labels": ds.y_test}
        if same_split:
            ref = self._reference()
            if ref is not None and len(ref["labels"]) == len(ds.y_test) and (ref["labels"] == ds.y_test).all():
                arrays["reference"] = ref["logits"]
        np.savez(path, **arrays)
        return path

    def _reference(self) -> dict | None:
        info = self.manifest.get("reference") or {}
        path = self.folder / Path(info.get("file") or "reference.npz").name
        if not path.is_file():
            return None
        sha, = outdir.file_digests(path, "sha256")
        if sha != info.get("sha256"):
            raise BadInput(f"{path}: sha256 does not match the manifest's; refusing to use it")
        try:
            with np.load(path, allow_pickle=False) as z:
                ref = {"logits": z["logits"], "labels": z["labels"]}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise BadInput(f"{path}: not a reference file ({brief(e)})") from None
        if ref["logits"].ndim != 2 or ref["labels"].ndim != 1:
            raise BadInput(f"{path}: reference logits must be (N, classes) and labels (N,)")
        return ref


class LoneArtifact(ArtifactFolder):
    """One artifact file that no edgecnn manifest lists: a model made elsewhere. What a
    manifest would say comes from the file itself (format, precision, tensors), from the
    dataset named with --dataset (image shape, classes) and from the user (scaling, and
    the fp32 file that fidelity is measured against, if any)."""

    def __init__(self, path: Path, preprocessing: dict, reference: Path | None = None):
        info = inspect.describe(path)  # unknown type, missing, unreadable or crashing: one line
        scaling = preprocess.declared(path, **preprocessing)
        self.folder, self.path, self.reference = path.parent, path, reference
        self.model = {"input_shape": None, "classes": None, "scaling": scaling, "dataset": None,
                      "source_framework": None, "source": str(path)}
        precision = "int8" if info["precision"] == "int8" else "fp32"
        self.entries = [{"file": path.name, "format": info["format"], "precision": precision, "status": "ok",
                         "bytes": info["bytes"], "sha256": outdir.file_digests(path, "sha256")[0],
                         "input": info["input"], "output": info["output"]}]
        self.manifest = {"model": self.model, "artifacts": self.entries}

    @property
    def framework(self) -> str:
        return self.path.name

    @property
    def where(self) -> str:
        return str(self.path)

    def eval_data(self, ds: data.Dataset, dataset_name: str, path: Path, same_split: bool = True) -> Path:
        h, w, c = ds.input_shape
        shape = self.entries[0]["input"]["shape"]
        dims = [d for d in shape[1:] if isinstance(d, int) and d > 0]
        if len(dims) == 3 and dims not in ([h, w, c], [c, h, w]):
            raise BadInput(f"{self.path}: takes {inspect.shape_text(shape[1:])} inputs but dataset "
                           f"{dataset_name!r} has {h}x{w}x{c} images")
        out = self.entries[0]["output"]["shape"]
        if len(out) != 2 or (isinstance(out[1], int) and out[1] > 0 and out[1] != ds.num_classes):
            raise BadInput(f"{self.path}: its output is {inspect.shape_text(out)}, "
                           f"not one logit per class of dataset {dataset_name!r} ({ds.num_classes} classes)")
        preprocess.check(self.model["scaling"], c, f"{self.path}: scaling")
        self.model.update(input_shape=[h, w, c], classes=list(ds.classes), dataset=dataset_name)
        np.savez(path, sample=ds.x_test[:1], images=ds.x_test, labels=ds.y_test)
        return path


def open_artifact(path, formats=FORMATS, precisions=PRECISIONS, preprocessing: dict | None = None,
                  reference: Path | None = None) -> ArtifactFolder:
    """An export folder (or one file its manifest lists), or a lone artifact file, whose
    preprocessing comes from a TOML beside it or the flags in `preprocessing`."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such artifact folder or file")
    # a manifest beside the file that cannot be read is refused, not taken for none
    lone = path.is_file() and path.name != "manifest.json" and not inspect.manifest_entry(path, strict=True)
    if not lone:
        given = [f"--{k.replace('_', '-')}" for k, v in (preprocessing or {}).items() if v is not None]
        if reference is not None:
            given.append("--reference")
        if given:
            raise BadInput(f"{path}: {given[0]} is for artifact files that no manifest lists; an export folder "
                           f"carries its own preprocessing and fp32 reference")
        return ArtifactFolder(path, formats, precisions)
    artifact = LoneArtifact(path, preprocessing or {}, reference)
    artifact.entries = [e for e in artifact.entries if e["format"] in formats and e["precision"] in precisions]
    return artifact


def _result_row(folder: ArtifactFolder, model: str, entry: dict, target_name: str, dataset: str) -> dict:
    return {"artifact": str(folder.folder / entry["file"]), "file": entry["file"], "folder": folder.where,
            "model": model, "source_framework": folder.model.get("source_framework"), "dataset": dataset,
            "format": entry["format"], "precision": entry["precision"], "target": target_name,
            "size_bytes": entry.get("bytes"), "sha256": entry.get("sha256"),
            "test_images_from": getattr(folder, "test_from", None), "test_sha256": getattr(folder, "test_sha256", None),
            "classes": folder.model.get("classes"), "macs": folder.model.get("macs")}


def _accuracy_drops(rows: list[dict]) -> None:
    """Points below the fp32 reference; without one (another dataset), below the same
    folder's fp32 artifact of the same format."""
    fp32 = {(r["folder"], r["format"], r["target"]): r.get("accuracy")
            for r in rows if r["precision"] == "fp32" and r.get("accuracy") is not None}
    for r in rows:
        if r.get("accuracy") is None:
            continue
        base = r.get("reference_accuracy")
        if base is None:
            base = fp32.get((r["folder"], r["format"], r["target"]))
        r["accuracy_drop"] = None if base is None else round(100 * (base - r["accuracy"]), 4)


def _speed_vs_fp32(rows: list[dict]) -> None:
    """Each quantized row's p50 over its fp32 twin's (the same folder, format and
    machine), measured in this run: below 1 is faster. Where it is above 1 the row
    carries a warning, since int8 is chosen to be faster (on CPUs without VNNI it can be
    slower: see the target's int8 sums)."""
    fp32 = {(r["folder"], r["format"], r["target"]): r["latency_ms"]["p50"]
            for r in rows if r["precision"] == "fp32" and r.get("latency_ms")}
    for r in rows:
        base = fp32.get((r["folder"], r["format"], r["target"]))
        if r["precision"] == "fp32" or not r.get("latency_ms") or not base:
            continue
        r["latency_vs_fp32"] = round(r["latency_ms"]["p50"] / base, 3)
        if r["latency_vs_fp32"] > 1:
            r.setdefault("warnings", []).append(
                f"{r['precision']} is slower than fp32 here: p50 {r['latency_ms']['p50']:.3f} ms against "
                f"{base:.3f} ms ({r['latency_vs_fp32']:.2f}x)")


def open_folders(paths, formats=FORMATS, precisions=PRECISIONS, preprocessing: dict | None = None,
                 reference: Path | None = None) -> list[ArtifactFolder]:
    """The artifact folders, their manifests checked and every chosen file verified
    against its sha256: nothing is loaded before this passes. `preprocessing` (flags)
    and `reference` are for lone artifact files."""
    opened = [open_artifact(p, formats, precisions, preprocessing, reference) for p in paths]
    folders = [f for f in opened if f.entries]
    if not folders:
        never = [e for f in opened for e in f.manifest.get("artifacts", []) if e.get("status") == UNAVAILABLE
                 and e.get("format") in formats and e.get("precision") in precisions]
        why = f" ({never[0]['format']} {never[0]['precision']} was never made: {never[0].get('reason')})" if never else ""
        raise BadInput(f"no artifacts match formats {','.join(formats)} and precisions {','.join(precisions)}{why}")
    for f in folders:
        f.verify()
    return folders


def eval_plans(folders: list[ArtifactFolder], dataset: str | None, data_dir, work: Path,
               resize: tuple[int, int] | None = None) -> list[tuple]:
    """(folder, dataset name, the harness's data file) for each folder, each dataset
    loaded once and matched to the artifacts' input shape and classes."""
    datasets: dict[tuple, data.Dataset] = {}

    def load(name, folder, whole):
        # a folder's images at the size the model takes: the user's --resize, else training's
        size = resize or (tuple(f.model["resize"]) if f.model.get("resize") and name.startswith("folder:") else None)
        if (name, folder, whole, size) not in datasets:
            datasets[name, folder, whole, size] = data.load(name, folder, whole=whole, resize=size)
        return datasets[name, folder, whole, size]

    plans = []
    for f in folders:
        recorded, sha = f.model.get("dataset"), f.model.get("test_sha256")
        name = data.canonical_name(dataset) if dataset else recorded
        if not name:
            where = f"{f.path} has no manifest to name" if isinstance(f, LoneArtifact) else \
                f"{f.folder}/manifest.json names no"
            raise BadInput(f"{where} its test dataset; pass --dataset")
        folder = data_dir or f.model.get("data_dir")  # where training found it, in a fresh shell too
        if name == recorded:
            try:
                ds = load(name, folder, False)
            except BadInput as e:
                raise BadInput(f"{e}; {f.where} was made from {recorded}: pass --dataset (or --data-dir for "
                               f"{', '.join(data.NAMED[2:])}) where it is now" + (
                                   f", and the same test images (sha256 {sha[:12]}...) keep fidelity measured"
                                   if sha else "")) from None
            same = True
        else:
            # the training set moved, or another test set: the same test images (by sha256)
            # are the training split's, else a test set the user names is scored whole
            ds = load(name, data_dir, False)
            same = bool(sha) and ds.test_sha256() == sha
            if not same:
                ds = load(name, data_dir, True)
        if f.model.get("classes"):
            ds = data.by_class_names(ds, f.model["classes"])
        f.test_from, f.test_sha256 = ds.test_from, ds.test_sha256()
        plans.append((f, name, f.eval_data(ds, name, work / f"eval-{len(plans)}.npz", same)))
    return plans


def validate(paths, formats=FORMATS, precisions=PRECISIONS, targets=None, gates: dict | None = None,
             dataset: str | None = None, data_dir=None, bench: dict | None = None, log=None,
             preprocessing: dict | None = None, reference: Path | None = None, baseline: dict | None = None,
             latency_tolerance: float | None = None, resize: tuple[int, int] | None = None) -> dict:
    """`baseline`: an earlier results.json document (baseline.py), judged against."""
    from .targets import LocalTarget
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    targets = list(targets or [LocalTarget()])
    gates = gates or {}
    folders = open_folders(paths, formats, precisions, preprocessing, reference)
    # the table's model column: the source framework, and the folder where two share one
    shared = {f.framework for f in folders if sum(g.framework == f.framework for g in folders) > 1}
    labels = [f"{f.framework} ({f.folder.name})" if f.framework in shared else f.framework for f in folders]
    # another machine's answers are judged against this machine's run of the same file
    host = next((t for t in targets if t.name == "local"), None)
    hidden_host = host is None and any(t.name != "local" for t in targets)
    if hidden_host:
        host = LocalTarget()
    for t in targets:
        if hasattr(t, "setup"):
            t.setup(log=log)

    with tempfile.TemporaryDirectory(prefix="edgecnn-validate-") as tmp, _closing(targets):
        work = Path(tmp)
        plans = eval_plans(folders, dataset, data_dir, work, resize)
        for f, _, data_path in plans:
            if isinstance(f, LoneArtifact) and f.reference is not None:
                _add_reference(f, data_path, work, log)
        rows = []
        total = sum(len(f.entries) for f in folders) * len(targets)
        for (f, name, data_path), label in zip(plans, labels):
            with np.load(data_path) as z:  # the fp32 answers that settle which machine deviates
                reference = z["reference"] if "reference" in z.files else None
            for entry in f.entries:
                job = {"artifact": str((f.folder / entry["file"]).resolve()), "format": entry["format"],
                       "data": str(data_path), "scaling": preprocess.for_job(f.model.get("scaling", {})),
                       "classes": len(f.model.get("classes") or []) or None, "bench": bench or {}}
                where = f"{label} {entry['format']} {entry['precision']}"
                others = [t for t in targets if t is not host]
                if hidden_host and not any(t.runs_format(entry["format"]) for t in others):
                    run_order = others  # no other target runs this format: no reference needed
                else:
                    run_order = ([host] if host else []) + others
                if entry.get("status") != "ok":
                    for target in targets:
                        rows.append(_result_row(f, label, entry, target.name, name))
                        rows[-1].update(status="fail", reason=f"export failed: {entry.get('reason', 'no file')}")
                    continue
                host_logits = None
                if run_order and run_order[0] is host:
                    # alone: nothing else may run beside a latency measurement on this machine
                    row = _result_row(f, label, entry, host.name, name)
                    if hidden_host:
                        log(f"validating {where} on local (the reference for other targets) ...")
                    else:
                        rows.append(row)
                        log(f"validating [{len(rows)}/{total}] {where} on local ...")
                    host_logits = _run_one(host, job, row, work, log, where)
                    run_order = run_order[1:]
                # the other machines do not share this one's clock: devices run in parallel
                others_rows = [_result_row(f, label, entry, t.name, name) for t in run_order]
                rows.extend(others_rows)
                if run_order:
                    log(f"validating {where} on {', '.join(t.name for t in run_order)} ...")
                with ThreadPoolExecutor(max_workers=len(run_order) or 1) as pool:
                    list(pool.map(lambda tr: _run_one(tr[0], job, tr[1], work, log, where, host_logits, reference),
                                  zip(run_order, others_rows)))
        labels = {}  # the images' labels by their sha256, for a paired comparison with a baseline
        for f, _, data_path in plans:
            with np.load(data_path) as z:
                labels[f.test_sha256] = z["labels"]
    _accuracy_drops(rows)
    _speed_vs_fp32(rows)
    for row in rows:
        stats.annotate(row)
        if row["status"] == "ok":
            row["gates"] = gating.check(row, gating.for_artifact(gates, row["format"], row["precision"]))
            if row["target"] != "local":
                row["gates"] += gating.check_host(row)
            else:  # where another machine is right and this one deviates, this row fails
                row["gates"] += gating.check_against_targets(
                    [r for r in rows if r["artifact"] == row["artifact"] and r["target"] != "local"])
        else:
            row.setdefault("gates", [])
    for row in rows:
        if row["status"] == "ok":
            row["status"] = "pass" if all(g["passed"] for g in row["gates"]) else "fail"
    against = None
    if baseline is not None:
        from . import baseline as baselines
        against = baselines.compare(rows, {"cpu": HOST_CPU}, baseline, labels,
                                    baselines.DEFAULT_TOLERANCE_PCT if latency_tolerance is None else latency_tolerance)
    return {
        "schema": RESULTS_SCHEMA, "edgecnn": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"machine": platform.machine(), "python": platform.python_version(), "cpu": HOST_CPU},
        "target": targets[0].describe(), "targets": [t.describe() for t in targets],
        "gates": gates.get("", {}), "gate_tables": {k: v for k, v in gates.items() if k},
        "bench": bench or {},
        "passed": _passed(rows, gates) and not (against and any(r["status"] == "skipped" for r in rows)),
        **({"baseline": against} if against else {}),
        "results": rows,
    }


def _add_reference(f: LoneArtifact, data_path: Path, work: Path, log) -> None:
    """The --reference file's logits on this machine, put into the harness's data file as
    the fp32 answers that fidelity is measured against."""
    from .targets import LocalTarget
    ref = f.reference
    fmt = format_of(ref)
    if fmt is None or not ref.is_file():
        raise BadInput(f"--reference {ref}: not an artifact file ({inspect.known_suffixes()})")
    log(f"running the reference {ref.name} on local ...")
    logits_path = work / "reference-logits.npy"
    # the harness refuses a reference whose output is not one logit per class
    result = LocalTarget().run({"artifact": str(ref.resolve()), "format": fmt, "data": str(data_path),
                                "scaling": preprocess.for_job(f.model["scaling"]), "logits_out": str(logits_path),
                                "classes": len(f.model["classes"]),
                                "bench": {"min_runs": 1, "min_seconds": 0.0, "warmup": 0}}, work / "job-reference")
    if result.get("status") != "ok":
        raise BadInput(f"--reference {ref}: {result.get('reason', 'could not be run')}")
    with np.load(data_path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(data_path, **arrays, reference=np.load(logits_path))


@contextmanager
def _closing(targets):
    """Devices get their working folders removed, whatever happens."""
    try:
        yield
    finally:
        for t in targets:
            if hasattr(t, "close"):
                t.close()


def _run_one(target, job: dict, row: dict, work: Path, log, where: str,
             host_logits: np.ndarray | None = None, reference: np.ndarray | None = None) -> np.ndarray | None:
    """Run one artifact on one target into `row`, compared with the local run's logits
    when given (and, where they differ, both with the fp32 `reference`); returns its own
    logits when it ran."""
    logits_path = work / f"logits-{id(row)}.npy"
    result = target.run(dict(job, logits_out=str(logits_path)),
                        work / ("job-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", target.name)))
    row.update(result, emulated=target.emulated)
    if row.get("pi_count", {}).get("cycles"):
        from . import pi_latency
        row["pi_estimate"] = pi_latency.estimate(target.cpu, row["pi_count"]["cycles"], row.get("macs"),
                                                 row.get("size_bytes") or 0, row["precision"])
    logits = np.load(logits_path) if result.get("status") == "ok" and logits_path.is_file() else None
    if target.name != "local" and logits is not None:
        row.update(crosscheck.against_host(logits, host_logits, reference, target.name, row.get("cpu"),
                                           HOST_CPU, row["precision"]))
    log(f"validating {where} on {target.name}: {_one_line_summary(row)}")
    if row.get("host_deviation"):
        log(f"validating {where}: {crosscheck.summary(row)}")
    return logits


def _passed(rows: list[dict], gates: dict) -> bool:
    """Every row that ran passed, something ran, and, when gates are set, nothing was
    skipped: a CI gate on an artifact that was never run must not read as green."""
    ran = [r for r in rows if r["status"] in ("pass", "fail", "error")]
    if not ran or any(r["status"] != "pass" for r in ran):
        return False
    return not (gating.any_set(gates) and any(r["status"] == "skipped" for r in rows))


def _one_line_summary(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row.get('reason', '')}"
    if row.get("emulated"):
        agree = row.get("host_agreement")
        return (f"accuracy {row['accuracy']:.2%} on {row['samples']} images, agreement with local "
                f"{'-' if agree is None else f'{agree:.2%}'}, max abs diff {row.get('host_max_abs_diff')}")
    return (f"accuracy {row['accuracy']:.2%}, p50 {row['latency_ms']['p50']:.3f} ms, "
            f"{row['runs']} runs, eval {row['eval_seconds']:.2f} s")


def exit_code(doc: dict) -> tuple[int, str | None]:
    """1 when a gate failed; 2 (with the line to print) when an artifact could not be run."""
    for r in doc["results"]:
        if r["status"] == "error":
            reason = r.get("reason") or "could not be run"
            return 2, reason if r["file"] in reason else f"{r['artifact']}: {reason}"
    return (0 if doc["passed"] else 1), None

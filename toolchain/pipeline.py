"""`edgecnn pipeline`: train → export → validate → report in one command.

Everything lands in one folder: runs/<framework>/, artifacts/<framework>/ and report/
(index.html, report.md, results.json, junit.xml). With both frameworks the same CNN is
trained in PyTorch and in Keras and every artifact of both is validated in one table;
with all, in edgecnn's NumPy framework too.

With --force an earlier pipeline folder is moved aside and comes back if this one fails
(a crash, bad input, Ctrl-C); it is deleted only once the new report is written. A gate
that fails is a result, not a failure: its folder stays.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from edgecnn import converters

from . import data, export as exporting, models, outdir, report, train as training, validate as validation


def pipeline(frameworks: list[str], dataset: str, out: Path, *, force: bool = False, data_dir=None,
             epochs: int | None = None, seed: int = 0, formats=None, precisions=("fp32",),
             calib_samples: int | None = None, options: dict | None = None, model: str = "cnn",
             width: float = 1.0, batch_size: int = 64, lr: float = 2e-3, train_threads: int | None = None,
             resize: tuple[int, int] | None = None,
             targets=None, gates=None, bench=None, log=None) -> dict:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out)
    outdir.check_free(out, force, "pipeline folder")  # before minutes of training
    ds = data.load(dataset, data_dir, resize=resize)  # a dataset that is not there fails now too
    cfg_epochs = training.default_epochs(dataset) if epochs is None else epochs
    threads = training.default_threads() if train_threads is None else train_threads
    configs = {fw: training.TrainConfig(framework=fw, epochs=cfg_epochs, batch_size=batch_size, lr=lr, seed=seed,
                                        threads=threads, model=model, width=width,
                                        hidden=training.DEFAULT_HIDDEN if model == "mlp" else ())
               for fw in frameworks}
    for cfg in configs.values():
        training.validate_config(cfg)
    spec = training.make_spec(next(iter(configs.values())), ds.input_shape, ds.classes)
    if formats is None:  # the default formats, or those a NumPy-only spec reaches
        formats = converters.made_from("numpy") if models.numpy_only(spec) else converters.default_formats()
    exporting.plan(list(formats), list(precisions))   # and so do bad choices
    if any(p in converters.CALIBRATED for p in precisions):
        calib_samples = exporting.calib_count(calib_samples, len(ds.x_train))
    exporting.check_reachable(spec, formats)
    steps, artifact_dirs, trained = {}, [], []
    with outdir.built_in_place(out, force, "pipeline folder"):
        for fw, cfg in configs.items():
            log(f"pipeline: training {fw} on {dataset} ({cfg_epochs} epochs)")
            t = time.perf_counter()
            result = training.train(dataset, cfg, out / "runs" / fw, force=True, data_dir=data_dir, resize=resize)
            steps[f"train_{fw}"] = round(time.perf_counter() - t, 1)
            trained.append(result)
            log(f"pipeline: {fw} test accuracy {result['test_accuracy']:.2%}")
            t = time.perf_counter()
            exporting.export(out / "runs" / fw, list(formats), list(precisions), out / "artifacts" / fw,
                             force=True, calib_samples=calib_samples, options=options, data_dir=data_dir,
                             log=log)
            steps[f"export_{fw}"] = round(time.perf_counter() - t, 1)
            artifact_dirs.append(out / "artifacts" / fw)
        t = time.perf_counter()
        doc = validation.validate(artifact_dirs, targets=targets, gates=gates, data_dir=data_dir, bench=bench, log=log)
        steps["validate"] = round(time.perf_counter() - t, 1)
        doc["pipeline"] = {"dataset": dataset, "frameworks": list(frameworks), "trained": trained,
                           "seconds": steps}
        doc["report"] = report.write(doc, out / "report")
        junit_path = out / "report" / "junit.xml"
        outdir.write_text_atomic(junit_path, report.junit(doc))
        doc["report"]["junit"] = str(junit_path)
    return doc

"""The `edgecnn` command line.

Exit status: 0 all good; 1 a gate failed; 2 bad usage or bad input (one line on stderr,
no traceback unless --debug); 3 an internal error, which is a bug worth reporting.
Results go to stdout, progress and logs to stderr.
"""
from __future__ import annotations

import json
import os
import re
import sys
import traceback
from pathlib import Path

import click

from edgecnn import converters

from . import __version__
from . import models, pi_latency
from .errors import BadInput, disk_full
from .train import DEFAULT_HIDDEN, OPTIMIZERS

# Keep third-party banners off the user's terminal; set before any framework import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

EXIT_OK, EXIT_GATE, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecnn")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug):
    """Train a small image classifier (in PyTorch, Keras or from-scratch NumPy), export
    it to edge formats and validate every artifact on the runtime a device would use."""


def _slug(dataset: str) -> str:
    kind, sep, path = dataset.partition(":")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{kind}-{Path(path).stem}" if sep else dataset)


PIPELINE_FRAMEWORKS = {"torch": ["torch"], "tf": ["tf"], "numpy": ["numpy"], "both": ["torch", "tf"],
                       "all": ["torch", "tf", "numpy"]}


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise BadInput(f"{option} takes comma-separated whole numbers, got {text!r}") from None


def _default_run_dir(framework: str, dataset: str) -> Path:
    return Path("runs") / f"{framework}-{_slug(dataset)}"


ALL_FORMATS = ",".join(converters.FORMATS)
DEFAULT_FORMATS = ",".join(converters.default_formats())
FORMATS_HELP = f"Comma-separated formats: {', '.join(converters.FORMATS)}."


def _precisions_help() -> str:
    """Each precision, with the formats that have it when not all do."""
    def which(p):
        have = [f for f in converters.FORMATS if p in converters.converter(f).PRECISIONS]
        return "" if len(have) == len(converters.FORMATS) else f" ({', '.join(have)})"
    return ", ".join(p + which(p) for p in converters.PRECISIONS)


def _converter_options(f):
    """A --NAME option for each converter's own export option (converters.Option)."""
    for opt in reversed(converters.options().values()):
        f = click.option(f"--{opt.name}", f"option_{opt.name}", type=click.Choice(opt.choices), default=opt.default,
                         show_default=True, help=opt.help)(f)
    return f


def _precisions(precisions: str | None, int8: bool) -> list[str]:
    """--precisions (default fp32), with int8 added by --int8: for export and pipeline."""
    from . import export as exporting
    precs = exporting.parse_list(precisions, exporting.ALL_PRECISIONS, "precision") if precisions else ["fp32"]
    if int8 and "int8" not in precs:
        precs.append("int8")
    return precs


def _options_given(flags: dict) -> dict:
    return {k.removeprefix("option_"): v for k, v in flags.items() if k.startswith("option_")}


def _model_options(f):
    """--model and --width, for train and pipeline."""
    f = click.option("--width", type=float, default=None,
                     help="mobilenet: channel width multiplier, e.g. 0.5 [default: 1.0].")(f)
    return click.option("--model", default="cnn", show_default=True, metavar="NAME|FILE",
                        help=f"{', '.join(models.ARCHS)}, or your own architecture in a .toml or .json file; "
                             f"mlp trains only with --framework numpy.")(f)


@cli.command()
@click.option("--framework", type=click.Choice(["torch", "tf", "numpy"]), default="torch", show_default=True,
              help="Framework to train in; numpy is edgecnn's own, written from scratch in NumPy.")
@click.option("--dataset", default="digits", show_default=True,
              help="digits, xor, mnist, fashion-mnist, idx:DIR, npz:PATH, csv:PATH or folder:PATH.")
@_model_options
@click.option("--hidden", default=None, metavar="SIZES",
              help=f"mlp: comma-separated hidden layer sizes, e.g. 4 or 4,4 "
                   f"[default: {','.join(map(str, DEFAULT_HIDDEN))}].")
@click.option("--activation", type=click.Choice(models.ACTIVATIONS), default=None,
              help="mlp: the activation after each hidden layer [default: relu].")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adam", show_default=True,
              help="sgd (plain gradient descent) only with --framework numpy.")
@click.option("--data-dir", type=click.Path(), default=None,
              help="Folder holding mnist/ or fashion-mnist/ IDX files (else $EDGECNN_DATA_DIR, "
                   "then the user cache).")
@click.option("--epochs", type=int, default=None, help="Passes over the training set "
              "[default: 30 for digits, 10000 for xor, 3 otherwise].")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True,
              help="Peak learning rate; it decays to zero on a cosine.")
@click.option("--shift", type=int, default=None,
              help="Random translation of training images, in pixels each way (0: none) "
                   "[default: 1; 0 for xor].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resize", default=None, metavar="HxW",
              help="folder: datasets: resize every image to this (bilinear), instead of refusing mixed sizes.")
@click.option("--threads", type=int, default=None,
              help="CPU threads for training [default: every usable core].")
@click.option("--out", type=click.Path(), default=None,
              help="Run folder to write [default: runs/FRAMEWORK-DATASET].")
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def train(framework, dataset, model, width, hidden, activation, optimizer, data_dir, epochs, batch_size, lr, shift, seed,
          resize, threads, out, force, as_json):
    """Train a model (the reference CNN by default) and write a run folder."""
    from . import train as training
    if data_dir is not None and not Path(data_dir).is_dir():
        raise BadInput(f"data folder {data_dir} does not exist")
    sizes = ()
    if hidden is not None or model == "mlp":
        sizes = tuple(_ints(hidden, "--hidden")) if hidden else DEFAULT_HIDDEN
    cfg = training.TrainConfig(
        framework=framework, epochs=training.default_epochs(dataset) if epochs is None else epochs,
        batch_size=batch_size, lr=lr, seed=seed,
        shift=training.default_shift(dataset) if shift is None else shift,
        threads=training.default_threads() if threads is None else threads,
        model=model, width=1.0 if width is None else width, hidden=sizes, activation=activation or "relu",
        optimizer=optimizer)
    out = Path(out) if out else _default_run_dir(framework, dataset)
    from .images import parse_size
    result = training.train(dataset, cfg, out, force=force, data_dir=data_dir, resize=parse_size(resize))
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{framework} {model} on {dataset}: test accuracy {result['test_accuracy']:.2%} "
                   f"after {cfg.epochs} epochs, {result['params']:,} parameters, {result['macs']:,} MACs, "
                   f"{result['train_seconds']:.1f} s of training")
        click.echo(f"run folder: {out}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--formats", default=DEFAULT_FORMATS, show_default=True, help=FORMATS_HELP)
@click.option("--int8", "int8", is_flag=True, help="Also write post-training int8 artifacts.")
@click.option("--precisions", default=None,
              help=f"Comma-separated: {_precisions_help()} [default: fp32, plus int8 with --int8].")
@click.option("--calib-samples", type=int, default=None,
              help="Training images used to calibrate int8 (the same for every format) "
                   "[default: 500, or all of a smaller training set].")
@click.option("--float-layers", default="", metavar="LAYER,...",
              help="conv2d or dense layers, named as in the run's spec.json, that every int8 artifact keeps "
                   "in float, with the batchnorm and activation folded into each (a wrong name lists them).")
@click.option("--calibration", default=None, metavar="|".join(converters.calibrations()),
              help="How int8 quantizers estimate activation ranges, where they offer it ("
                   + "; ".join(f"{f}: {', '.join(converters.converter(f).CALIBRATIONS)}" for f in converters.FORMATS
                               if hasattr(converters.converter(f), "CALIBRATIONS"))
                   + ") [default: each one's first].")
@click.option("--weight-granularity", type=click.Choice(converters.GRANULARITIES), default=None,
              help="int8 weight scales: one per output channel, or one per layer [default: per-channel].")
@click.option("--weight-rounding", type=click.Choice(converters.ROUNDINGS), default=None,
              help="How int8 weights are rounded onto the quantizer's scales: gptq keeps each layer's output "
                   "on the calibration images close to float, nearest rounds each weight on its own "
                   "[default: gptq].")
@click.option("--max-accuracy-drop", type=float, default=None, metavar="POINTS",
              help="Repair: an int8 artifact that loses more test accuracy than this keeps its most harmful "
                   "layers in float, one more at a time, until it fits; each step is listed.")
@_converter_options
@click.option("--data-dir", type=click.Path(), default=None,
              help="Where to find the run's dataset if not where training found it.")
@click.option("--out", type=click.Path(), default=None,
              help="Artifact folder [default: artifacts/RUN_NAME].")
@click.option("--force", is_flag=True, help="Replace an existing artifact folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
def export(run_dir, formats, int8, precisions, calib_samples, float_layers, calibration, weight_granularity,
           weight_rounding, max_accuracy_drop, data_dir, out, force, as_json, **flags):
    """Export a trained run to edge artifacts, with a manifest."""
    from . import export as exporting
    fmts = exporting.parse_list(formats, converters.FORMATS, "format")
    precs = _precisions(precisions, int8)
    out = Path(out) if out else Path("artifacts") / Path(run_dir).resolve().name
    manifest, code = exporting.export(run_dir, fmts, precs, out, force=force,
                                      calib_samples=calib_samples, options=_options_given(flags), data_dir=data_dir,
                                      float_layers=[n.strip() for n in float_layers.split(",") if n.strip()],
                                      calibration=calibration, granularity=weight_granularity,
                                      max_accuracy_drop=max_accuracy_drop, rounding=weight_rounding)
    if as_json:
        click.echo(json.dumps(manifest))
    else:
        click.echo(exporting.table(manifest))
        click.echo(f"artifacts: {out}")
    return code


@cli.command("import")
@click.argument("model", type=click.Path())
@click.option("--dataset", default="digits", show_default=True,
              help="The images the model takes: calibration, the fp32 reference and accuracy come from it.")
@click.option("--data-dir", type=click.Path(), default=None, help="Where the dataset's files are.")
@click.option("--weights", type=click.Path(), default=None,
              help="For a module:factory entry point: a .safetensors file to load into what it returns.")
@click.option("--classes", default=None, metavar="NAME,...",
              help="Class names in the model's output order [default: the dataset's].")
@click.option("--divide-by", type=float, default=None,
              help="The model takes pixels divided by this [default: 255, or MODEL.toml's].")
@click.option("--mean", default=None, metavar="M[,M,M]", help="Then less this, per channel.")
@click.option("--std", default=None, metavar="S[,S,S]", help="Then over this, per channel.")
@click.option("--out", type=click.Path(), default=None, help="Run folder [default: runs/imported-MODEL_NAME].")
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def import_(model, weights, dataset, data_dir, classes, divide_by, mean, std, out, force, as_json):
    """Make a run folder from a model edgecnn did not train, for export: a .keras file, a
    PyTorch entry point package.module:factory (your code: it runs), a .pt2 program
    (torch.export.save) or an .onnx file. A model made of edgecnn's graph vocabulary
    exports to every format; any other is kept in its own framework and exports to what
    that framework's converters make."""
    from .import_model import import_model
    name = Path(model).stem if ":" not in model else model.replace(":", "-").replace(".", "-")
    out = Path(out) if out else Path("runs") / f"imported-{name}"
    result = import_model(model, dataset, out, data_dir=data_dir, classes=classes, force=force,
                          divide_by=divide_by, mean=mean, std=std, weights=weights)
    if as_json:
        click.echo(json.dumps(result))
    elif result["layers"] is None:  # kept in its own framework
        click.echo(f"{result['model']}: kept in its own framework ({result['outside_vocabulary']}), "
                   f"{result['params']:,} parameters; test accuracy {result['test_accuracy']:.2%} on "
                   f"{result['dataset']}; the saved model reproduces it to {result['max_abs_diff']:.1e}")
        click.echo(f"run folder: {out}  (next: edgecnn export {out} --int8)")
    else:
        click.echo(f"{result['model']}: {result['layers']} layers of edgecnn's graph, {result['params']:,} parameters, "
                   f"{result['macs']:,} MACs; test accuracy {result['test_accuracy']:.2%} on {result['dataset']}; "
                   f"the graph reproduces the model to {result['max_abs_diff']:.1e}"
                   + (" (its final softmax dropped: artifacts output logits)" if result["final_softmax_dropped"]
                      else ""))
        click.echo(f"run folder: {out}  (next: edgecnn export {out} --int8)")


def _target_options(f):
    """Options shared by validate, pipeline and explain: where the artifacts run."""
    opts = [
        click.option("--target", "targets", multiple=True, default=("local",), show_default=True,
                     help="Where to run the artifacts: local (this machine), emulated:cortex-a72 (Raspberry "
                          "Pi 4), emulated:cortex-a76 (Pi 5), emulated:x86-avx2 (an x86 CPU without VNNI, whose "
                          "int8 kernels saturate), ssh://user@host[:port] (a device). Repeat for several."),
        click.option("--remote-python", default="python3", show_default=True,
                     help="The Python to run on ssh:// devices; it needs numpy and the runtimes."),
        click.option("--ssh-config", type=click.Path(), default=None,
                     help="An ssh config file for ssh:// targets [default: ssh's own, ~/.ssh/config]."),
        click.option("--ssh-accept-new-host-key", "accept_new", is_flag=True,
                     help="Trust a device's host key on first connection; a changed key is still refused."),
        click.option("--threads", type=int, default=1, show_default=True,
                     help="Runtime threads (1: single-stream edge latency)."),
        click.option("--device-timeout", type=float, default=None, metavar="SECONDS",
                     help="Most seconds one artifact's run may take on a target [default: 900]."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _targets(targets, threads, remote_python, ssh_config, accept_new, device_timeout) -> list:
    from .targets import parse_target
    ssh = {"python": remote_python, "ssh_config": ssh_config, "accept_new": accept_new}
    return [parse_target(t, threads, ssh, device_timeout) for t in dict.fromkeys(targets)]


@cli.command()
@click.argument("art_dir", type=click.Path())
@click.option("--samples", type=int, default=None, help="Test images to compare on [default: 256].")
@click.option("--data-dir", type=click.Path(), default=None, help="Where the run's dataset is, if not where it was.")
@click.option("--formats", default=",".join(converters.FORMATS), show_default=True,
              help="Comma-separated formats whose int8 artifacts to explain.")
@click.option("--alone/--no-alone", default=True, show_default=True,
              help="Also make each int8 artifact again with one layer alone quantized, for each conv2d and "
                   "dense layer, and score it: one conversion per layer and format.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@_target_options
def explain(art_dir, samples, data_dir, formats, alone, as_json, targets, remote_python, ssh_config, accept_new,
            device_timeout, threads):
    """Where int8 loses accuracy: each layer of each int8 artifact in ART_DIR against the
    fp32 model at the same layer (SQNR, cosine, max error), where the error jumps, and
    which layer costs the most accuracy when it alone is quantized. The layers are read
    on each --target's runtime; the one-layer variants are made and scored here."""
    from . import export as exporting
    from .explain import explain as run_explain, table
    fmts = exporting.parse_list(formats, converters.FORMATS, "format")
    doc = run_explain(art_dir, **({"samples": samples} if samples is not None else {}), data_dir=data_dir,
                      alone=alone,
                      targets=_targets(targets, threads, remote_python, ssh_config, accept_new, device_timeout),
                      formats=fmts)
    click.echo(json.dumps(doc) if as_json else table(doc))


_pi_estimates_option = click.option(
    "--pi-estimates/--no-pi-estimates", default=True, show_default=True,
    help="On emulated:cortex-a72 and -a76, count the instructions of a single inference and estimate its "
         "latency on a real Pi 4 and Pi 5, with the calibration's error band.")


@cli.command()
@click.argument("artifact", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", type=int, default=3, show_default=True, help="Classes to show per image.")
@click.option("--resize", default=None, metavar="HxW",
              help="Resize images of another size to this one (bilinear) instead of refusing them.")
@click.option("--divide-by", type=float, default=None,
              help="For artifact files made elsewhere: divide pixels by this [default: 255].")
@click.option("--mean", default=None, help="For artifact files made elsewhere: per-channel mean to subtract.")
@click.option("--std", default=None, help="For artifact files made elsewhere: per-channel std to divide by.")
@click.option("--classes", default=None, metavar="NAME,...",
              help="For artifact files made elsewhere: the class names, in output order.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@_pi_estimates_option
@_target_options
def predict(artifact, images, top_k, resize, divide_by, mean, std, classes, as_json, pi_estimates, targets,
            remote_python, ssh_config, accept_new, device_timeout, threads):
    """The most likely classes of image files (PNG, JPEG; folders searched), from one
    artifact with its own preprocessing. Runs here unless --target names one machine."""
    from .predict import predict as run_predict, render
    if len(targets) > 1:
        raise BadInput("predict runs on one --target at a time")
    (target,) = _targets(targets, threads, remote_python, ssh_config, accept_new, device_timeout)
    if target.emulated:
        target.estimates = pi_estimates
    doc = run_predict(Path(artifact), images, top_k, None if target.name == "local" else target, resize,
                      {"divide_by": divide_by, "mean": mean, "std": std},
                      classes.split(",") if classes else None, threads)
    click.echo(json.dumps(doc) if as_json else render(doc))


@cli.command()
@click.argument("artifact", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def inspect(artifact, as_json):
    """Show what is in an artifact: format, precision, tensors, operators."""
    from .inspect import describe, render
    info = describe(Path(artifact))
    click.echo(json.dumps(info) if as_json else render(info))


def _validation_options(f):
    """Options shared by validate and pipeline: where to run, what to measure, the gates."""
    opts = [
        click.option("--min-accuracy", type=float, default=None,
                     help="Gate: least accuracy on the test images, in %."),
        click.option("--max-accuracy-drop", type=float, default=None,
                     help="Gate: most accuracy points an artifact may lose against the fp32 reference."),
        click.option("--min-agreement", type=float, default=None,
                     help="Gate: least top-1 agreement with the fp32 reference, in %."),
        click.option("--max-latency-ms", type=float, default=None, help="Gate: largest p90 batch-1 latency."),
        click.option("--max-size-kb", type=float, default=None, help="Gate: largest file size in KiB."),
        click.option("--max-est-latency-ms", multiple=True, metavar="BOARD=MS",
                     help="Gate: largest estimated latency on a real board (" + ", ".join(
                         f"{b} at {clocks[0]:g} GHz, from --target emulated:{core} rows"
                         for b, (core, _, clocks) in pi_latency.BOARDS.items()) + "). Repeatable."),
        click.option("--drop-significance", type=float, default=None, metavar="ALPHA",
                     help="Gate: fail an artifact that McNemar's exact one-sided test finds less accurate than its "
                          "fp32 reference at this level, e.g. 0.05."),
        click.option("--config", type=click.Path(), default=None,
                     help="Gates from this TOML file [default: ./edgecnn.toml when present]; flags override it."),
        click.option("--bench-runs", type=int, default=200, show_default=True,
                     help="Least number of timed batch-1 runs per artifact."),
        click.option("--bench-seconds", type=float, default=1.0, show_default=True,
                     help="Least number of seconds of timed runs per artifact."),
        click.option("--emulated-samples", type=int, default=None, metavar="N",
                     help="Test images per artifact on emulated targets, which run about 125x slower than "
                          "this machine [default: 1000]."),
        _pi_estimates_option,
        click.option("--junit", type=click.Path(), default=None,
                     help="Write JUnit XML here: one test case per artifact and gate."),
        click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return _target_options(f)


def _validation_setup(targets, threads, config, bench_runs, bench_seconds, remote_python, ssh_config, accept_new,
                      device_timeout, emulated_samples=None, pi_estimates=True, max_est_latency_ms=(),
                      **gate_flags):
    from . import gates as gating
    gate_flags.update(gating.estimate_flags(max_est_latency_ms))
    if bench_runs < 1 or bench_seconds < 0:
        raise BadInput("--bench-runs must be 1 or more and --bench-seconds 0 or more")
    if emulated_samples is not None and emulated_samples < 1:
        raise BadInput(f"--emulated-samples must be 1 or more, not {emulated_samples}")
    from_file, source = gating.load_config(Path(config) if config else None)
    if source:
        click.echo(f"edgecnn: gates from {source}", err=True)
    parsed = _targets(targets, threads, remote_python, ssh_config, accept_new, device_timeout)
    for board, (core, _, _) in pi_latency.BOARDS.items():
        if f"max_est_{board}_ms" not in gate_flags:
            continue
        if f"emulated:{core}" not in [t.name for t in parsed]:
            raise BadInput(f"--max-est-latency-ms {board}=... needs --target emulated:{core}, "
                           f"whose rows carry that board's estimates")
        if not pi_estimates or threads != 1:
            raise BadInput(f"--max-est-latency-ms {board}=... needs the estimates, which "
                           + ("--no-pi-estimates turns off" if not pi_estimates else "count one thread (--threads 1)"))
    for target in parsed:
        if target.emulated and emulated_samples is not None:
            target.samples = emulated_samples
        if target.emulated:
            target.estimates = pi_estimates
    return (parsed, gating.merge(from_file, gate_flags),
            {"min_runs": bench_runs, "min_seconds": bench_seconds})


def _finish_validation(doc, junit, as_json, report_files=None) -> int:
    from . import outdir, report
    from .validate import exit_code
    if junit:
        outdir.write_text_atomic(Path(junit), report.junit(doc))
        report_files = dict(report_files or {}, junit=junit)
    for line in report.warnings(doc):
        click.echo(f"warning: {line}", err=True)
    if as_json:
        click.echo(json.dumps(doc))
    else:
        click.echo(report.table(doc))
        click.echo(f"scored: {report.scored_line(doc)}")
        if report.estimates_line(doc):
            click.echo(f"estimates: {report.estimates_line(doc)}")
        if doc.get("baseline"):
            from .baseline import rows as baseline_rows
            from .columns import columns
            click.echo(f"\n{report.baseline_note(doc)}\n" + "\n".join(columns(baseline_rows(doc))))
        for line in report.differences(doc):
            click.echo(f"differs: {line}")
        for ex in doc.get("explain", []):
            from .explain import table as explain_table
            click.echo(f"\nexplain {ex['folder']}: " + (ex["reason"] if "reason" in ex else f"\n{explain_table(ex)}"))
        for kind, path in (report_files or {}).items():
            if kind in ("html", "markdown", "junit"):
                click.echo(f"{kind} report: {path}")
        click.echo("verdict: " + ("PASS" if doc["passed"] else "FAIL"))
    code, error = exit_code(doc)
    if error:
        click.echo(f"edgecnn: error: {_one_line(error)}", err=True)
    return code


@cli.command()
@click.argument("art_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--formats", default=ALL_FORMATS, show_default=True,
              help="Comma-separated formats to run (those the folders hold).")
@click.option("--precisions", default=",".join(converters.PRECISIONS), show_default=True,
              help="Comma-separated precisions to run.")
@click.option("--dataset", default=None,
              help="Test split to judge on [default: the dataset in the manifest].")
@click.option("--data-dir", type=click.Path(), default=None, help="Where to find MNIST-style IDX files.")
@click.option("--resize", default=None, metavar="HxW",
              help="folder: test sets: resize every image to this (bilinear) [default: as training did].")
@click.option("--report", "report_dir", type=click.Path(), default=None,
              help="Write report.md, index.html and results.json into this folder.")
@click.option("--reference", type=click.Path(), default=None,
              help="For artifact files made elsewhere: the fp32 file whose answers fidelity is measured "
                   "against [default: none, fidelity not measured].")
@click.option("--divide-by", type=float, default=None,
              help="For artifact files made elsewhere: divide pixels by this first [default: 255, or FILE.toml's].")
@click.option("--mean", default=None, help="For artifact files made elsewhere: per-channel mean to subtract "
                                           "after dividing, e.g. 0.485,0.456,0.406.")
@click.option("--std", default=None, help="For artifact files made elsewhere: per-channel std to divide by, with --mean.")
@click.option("--baseline", type=click.Path(), default=None, metavar="RESULTS.json",
              help="Judge each artifact against an earlier run's results.json: accuracy by McNemar's paired test, "
                   "p50 latency against a tolerance plus the runs' own noise.")
@click.option("--latency-tolerance", type=float, default=None, metavar="PCT",
              help="With --baseline: how much slower the p50 may be, beyond the runs' noise [default: 10].")
@click.option("--explain", "explain_too", is_flag=True,
              help="Also run `edgecnn explain` on each folder with int8 artifacts, on the same targets, into the "
                   "results and the report (it makes each int8 artifact again once per layer).")
@_validation_options
def validate(art_dirs, formats, precisions, dataset, data_dir, resize, report_dir, reference, divide_by, mean, std,
             baseline, latency_tolerance, explain_too,
             targets,
             threads, config, bench_runs, bench_seconds, junit, as_json, remote_python, ssh_config, accept_new,
             device_timeout,
             **gate_flags):
    """Validate artifacts on their runtimes: accuracy, fidelity, latency, gates.

    ART_DIRS are folders written by `edgecnn export` (or single artifacts in one); several
    folders are validated into one table. A .tflite, .onnx, .ptl or .npz file that no
    manifest lists is a model made elsewhere: name its test set with --dataset, and its
    preprocessing with the flags below or a FILE.toml beside it. Exit status 1 when a
    gate fails.
    """
    from . import export as exporting, report
    from .validate import validate as run_validation
    fmts = exporting.parse_list(formats, converters.FORMATS, "format")
    precs = exporting.parse_list(precisions, exporting.ALL_PRECISIONS, "precision")
    tgts, gates, bench = _validation_setup(targets, threads, config, bench_runs, bench_seconds, remote_python,
                                           ssh_config, accept_new, device_timeout, **gate_flags)
    from . import baseline as baselines
    from .images import parse_size
    if latency_tolerance is not None:
        baselines.check_tolerance(latency_tolerance)
        if baseline is None:
            raise BadInput("--latency-tolerance applies to a comparison: add --baseline OLD/results.json")
    doc = run_validation(art_dirs, fmts, precs, targets=tgts, gates=gates, dataset=dataset, data_dir=data_dir,
                         bench=bench, preprocessing={"divide_by": divide_by, "mean": mean, "std": std},
                         reference=Path(reference) if reference else None,
                         baseline=baselines.load(Path(baseline)) if baseline else None,
                         latency_tolerance=latency_tolerance, resize=parse_size(resize))
    if explain_too:
        from .explain import for_report
        doc["explain"] = for_report(art_dirs, data_dir, tgts, fmts)
    return _finish_validation(doc, junit, as_json, report.write(doc, Path(report_dir)) if report_dir else None)


@cli.command()
@click.option("--framework", type=click.Choice(list(PIPELINE_FRAMEWORKS)), default="both", show_default=True,
              help="Train in PyTorch, TensorFlow/Keras, NumPy, both (PyTorch and Keras side by side) or all three.")
@click.option("--dataset", default="digits", show_default=True,
              help="digits, mnist, fashion-mnist, idx:DIR, npz:PATH, csv:PATH or folder:PATH.")
@click.option("--data-dir", type=click.Path(), default=None, help="Where to find MNIST-style IDX files.")
@click.option("--epochs", type=int, default=None, help="[default: 30 for digits, 3 otherwise]")
@click.option("--seed", type=int, default=0, show_default=True)
@_model_options
@click.option("--formats", default=None, help=f"{FORMATS_HELP[:-1]} [default: {DEFAULT_FORMATS}; {','.join(converters.made_from('numpy'))} for a spec only NumPy has].")
@click.option("--int8", "int8", is_flag=True, help="Also export and validate post-training int8 artifacts.")
@click.option("--precisions", default=None,
              help=f"Comma-separated: {_precisions_help()} [default: fp32, plus int8 with --int8].")
@click.option("--calib-samples", type=int, default=None,
              help="[default: 500, or all of a smaller training set]")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Training batch size.")
@click.option("--lr", type=float, default=2e-3, show_default=True,
              help="Peak learning rate; it decays to zero on a cosine.")
@click.option("--resize", default=None, metavar="HxW",
              help="folder: datasets: resize every image to this (bilinear), instead of refusing mixed sizes.")
@click.option("--train-threads", type=int, default=None,
              help="CPU threads for training [default: every usable core]; --threads is the runtimes'.")
@click.option("--out", type=click.Path(), default=None,
              help="Folder for runs, artifacts and report [default: runs/pipeline-DATASET].")
@click.option("--force", is_flag=True, help="Replace what an earlier pipeline wrote there.")
@_converter_options
@_validation_options
def pipeline(framework, dataset, data_dir, epochs, seed, model, width, formats, int8, precisions, calib_samples,
             batch_size, lr, resize, train_threads, out, force,
             targets, threads, config, bench_runs, bench_seconds, junit, as_json, remote_python, ssh_config,
             accept_new, device_timeout, **flags):
    """Train, export, validate and report in one go."""
    from . import export as exporting
    from .images import parse_size
    from .pipeline import pipeline as run_pipeline
    if data_dir is not None and not Path(data_dir).is_dir():
        raise BadInput(f"data folder {data_dir} does not exist")
    fmts = exporting.parse_list(formats, converters.FORMATS, "format") if formats else None
    options = _options_given(flags)
    tgts, gates, bench = _validation_setup(targets, threads, config, bench_runs, bench_seconds, remote_python,
                                           ssh_config, accept_new, device_timeout,
                                           **{k: v for k, v in flags.items() if not k.startswith("option_")})
    frameworks = PIPELINE_FRAMEWORKS[framework]
    out = Path(out) if out else Path("runs") / f"pipeline-{_slug(dataset)}"
    doc = run_pipeline(frameworks, dataset, out, force=force, data_dir=data_dir, epochs=epochs, seed=seed,
                       formats=fmts, precisions=_precisions(precisions, int8),
                       calib_samples=calib_samples, options=options, model=model, width=1.0 if width is None else width,
                       batch_size=batch_size, lr=lr, train_threads=train_threads, resize=parse_size(resize),
                       targets=tgts, gates=gates, bench=bench)
    return _finish_validation(doc, junit, as_json, doc["report"])


def _emulated_extras() -> list[str]:
    from .emulation import extras
    return list(extras())


@cli.group()
def device():
    """Set up the environments that validate artifacts on other CPUs."""


@device.command("setup")
@click.argument("kind", type=click.Choice(["emulated"]))
@click.option("--force", is_flag=True, help="Provision again even if the cached environment is current.")
@click.option("--with", "extras", multiple=True, type=click.Choice(_emulated_extras()),
              help="Add the opt-in runtimes that need it to the emulated Pi boards: torch is several GB with "
                   "the CUDA libraries PyPI's aarch64 torch requires, and the size is stated before anything "
                   "is fetched. Repeat for several.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def device_setup(kind, force, extras, as_json):
    """Provision the emulated aarch64 Python (Raspberry Pi 4 and 5 CPUs) in the user cache,
    and on an x86-64 machine the emulated x86 CPU without VNNI (x86-avx2)."""
    from . import emulation
    for name in extras:  # what sets the versions is checked before anything is fetched
        emulation.extra_versions(name)
    info = emulation.setup(force=force)
    info["extras"] = {name: emulation.setup_extra(name, force=force) for name in dict.fromkeys(extras)}
    info["x86"] = {m: emulation.setup_x86(m, force=force) for m, c in emulation.CPUS.items()
                   if c["arch"] == "x86_64" and not emulation.host_runs(m)}
    if as_json:
        click.echo(json.dumps(info))
    else:
        def how(i):
            return "reused" if i["reused"] else f"set up in {i['seconds']:.0f} s"
        click.echo(f"emulated aarch64 Python 3.11 with {', '.join(f'{k} {v}' for k, v in info['versions']['wheels'].items())}: "
                   f"{how(info)}, in {info['root']}")
        for name, x in info["extras"].items():
            click.echo(f"  with {', '.join(f'{k} {v}' for k, v in x['versions'].items())}: {how(x)}, in {x['root']}")
        counting = info["counting"]
        click.echo(f"  Pi latency estimates: ready (instruction-counting plugin {counting['plugin']})"
                   if counting["ready"] else f"  no Pi latency estimates: {counting['reason']}")
        for model, x in info["x86"].items():
            click.echo(f"emulated {model} ({emulation.CPUS[model]['board']}), this machine's Python: "
                       f"{how(x)}, in {x['root']}")


@cli.command()
@click.option("--target", "target", default=None,
              help="Check a device instead: ssh://user@host[:port] (its Python and runtimes).")
@click.option("--remote-python", default="python3", show_default=True, help="The device's Python.")
@click.option("--ssh-config", type=click.Path(), default=None, help="An ssh config file for the device.")
@click.option("--ssh-accept-new-host-key", "accept_new", is_flag=True,
              help="Trust the device's host key on first connection.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def doctor(target, remote_python, ssh_config, accept_new, as_json):
    """Which runtimes, converters and targets are usable here (or on a device), and why not."""
    from .doctor import check, check_device, render
    info = check_device(target, remote_python, ssh_config, accept_new) if target else check()
    click.echo(json.dumps(info) if as_json else render(info))
    return EXIT_OK if info["ok"] else EXIT_GATE


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get("EDGECNN_DEBUG", "") not in ("", "0")
    try:
        code = cli.main(args=argv, prog_name="edgecnn", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help(), err=True)
        code = EXIT_BAD_INPUT
    except click.ClickException as e:  # bad usage: unknown option, bad choice, bad number
        click.echo(f"edgecnn: error: {_one_line(e.format_message())}", err=True)
        code = EXIT_BAD_INPUT
    except click.Abort:
        click.echo("edgecnn: aborted", err=True)
        code = 130
    except KeyboardInterrupt:
        click.echo("edgecnn: interrupted", err=True)
        code = 130
    except BadInput as e:
        if debug:
            traceback.print_exc()
        click.echo(f"edgecnn: error: {_one_line(e)}", err=True)
        code = EXIT_BAD_INPUT
    except OSError as e:  # the environment refused: disk full, permission denied, ...
        if debug:
            traceback.print_exc()
        click.echo(f"edgecnn: error: {'the disk is full: ' if disk_full(e) else ''}{_one_line(e)}", err=True)
        code = EXIT_BAD_INPUT
    except Exception as e:  # a bug: still one line unless --debug
        if debug:
            traceback.print_exc()
        click.echo(f"edgecnn: internal error: {type(e).__name__}: {_one_line(e)} "
                   f"(rerun with --debug for the traceback)", err=True)
        code = EXIT_INTERNAL
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":
    main()

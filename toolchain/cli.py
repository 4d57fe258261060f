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

from . import __version__
from .errors import BadInput

# Keep third-party banners off the user's terminal; set before any framework import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

EXIT_OK, EXIT_GATE, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgecnn")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug):
    """Train a small image-classification CNN and export it to edge formats."""


def _default_run_dir(framework: str, dataset: str) -> Path:
    kind, sep, path = dataset.partition(":")
    slug = f"{kind}-{Path(path).stem}" if sep else dataset
    return Path("runs") / f"{framework}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', slug)}"


@cli.command()
@click.option("--framework", type=click.Choice(["torch", "tf"]), default="torch", show_default=True,
              help="Framework to train in.")
@click.option("--dataset", default="digits", show_default=True,
              help="digits, mnist, fashion-mnist, idx:DIR, npz:PATH, csv:PATH or folder:PATH.")
@click.option("--data-dir", type=click.Path(), default=None,
              help="Folder holding mnist/ or fashion-mnist/ IDX files (else $EDGECNN_DATA_DIR, "
                   "then the user cache).")
@click.option("--epochs", type=int, default=None, help="Passes over the training set "
              "[default: 30 for digits, 3 otherwise].")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True,
              help="Peak learning rate of Adam; it decays to zero on a cosine.")
@click.option("--shift", type=int, default=1, show_default=True,
              help="Random translation of training images, in pixels each way (0: none).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None,
              help="CPU threads for training [default: every usable core].")
@click.option("--out", type=click.Path(), default=None,
              help="Run folder to write [default: runs/FRAMEWORK-DATASET].")
@click.option("--force", is_flag=True, help="Replace an existing run folder.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def train(framework, dataset, data_dir, epochs, batch_size, lr, shift, seed, threads, out, force, as_json):
    """Train the reference CNN and write a run folder."""
    from . import train as training
    if data_dir is not None and not Path(data_dir).is_dir():
        raise BadInput(f"data folder {data_dir} does not exist")
    cfg = training.TrainConfig(
        framework=framework, epochs=training.default_epochs(dataset) if epochs is None else epochs,
        batch_size=batch_size, lr=lr, seed=seed, shift=shift,
        threads=training.default_threads() if threads is None else threads)
    out = Path(out) if out else _default_run_dir(framework, dataset)
    result = training.train(dataset, cfg, out, force=force, data_dir=data_dir)
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(f"{framework} cnn on {dataset}: test accuracy {result['test_accuracy']:.2%} "
                   f"after {cfg.epochs} epochs, {result['params']:,} parameters, "
                   f"{result['train_seconds']:.1f} s of training")
        click.echo(f"run folder: {out}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--formats", default="tflite,ptl,onnx", show_default=True,
              help="Comma-separated: tflite, ptl, onnx.")
@click.option("--int8", "int8", is_flag=True, help="Also write post-training int8 artifacts.")
@click.option("--precisions", default=None,
              help="Comma-separated: fp32, int8, dynamic (TFLite only) [default: fp32, plus int8 with --int8].")
@click.option("--calib-samples", type=int, default=500, show_default=True,
              help="Training images used to calibrate int8 (the same for every format).")
@click.option("--engine", type=click.Choice(["qnnpack", "x86"]), default="qnnpack", show_default=True,
              help="torch.ao engine for int8 TorchScript Lite: qnnpack for ARM devices, x86 for x86.")
@click.option("--data-dir", type=click.Path(), default=None,
              help="Where to find the run's dataset if not where training found it.")
@click.option("--out", type=click.Path(), default=None,
              help="Artifact folder [default: artifacts/RUN_NAME].")
@click.option("--force", is_flag=True, help="Replace an existing artifact folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
def export(run_dir, formats, int8, precisions, calib_samples, engine, data_dir, out, force, as_json):
    """Export a trained run to edge artifacts, with a manifest."""
    from . import export as exporting
    fmts = exporting.parse_list(formats, exporting.FORMATS, "format")
    precs = exporting.parse_list(precisions, exporting.ALL_PRECISIONS, "precision") if precisions else ["fp32"]
    if int8 and "int8" not in precs:
        precs.append("int8")
    out = Path(out) if out else Path("artifacts") / Path(run_dir).resolve().name
    manifest, code = exporting.export(run_dir, fmts, precs, out, force=force,
                                      calib_samples=calib_samples, engine=engine, data_dir=data_dir)
    if as_json:
        click.echo(json.dumps(manifest))
    else:
        click.echo(exporting.table(manifest))
        click.echo(f"artifacts: {out}")
    return code


@cli.command()
@click.argument("artifact", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def inspect(artifact, as_json):
    """Show what is in an artifact: format, precision, tensors, operators."""
    from .inspect import describe, render
    info = describe(Path(artifact))
    click.echo(json.dumps(info) if as_json else render(info))


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
        click.echo(f"edgecnn: error: {_one_line(e)}", err=True)
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

"""edgecnn.converters: one module per artifact format, each with the same surface, its
registry entry on the export side:

    TWIN ("torch", "keras" or "numpy": which twin it converts from), PRECISIONS, LAYOUT,
    REQUIRES (the distributions export needs: each a tuple of alternatives),
    OPTIONS (Option tuples: the CLI grows a --NAME for each), DEFAULT (in the default
    --formats; True unless set), CALIBRATIONS (for int8: the range estimators its
    quantizer offers, default first), export(model, precision, calib, path, options) -> metadata

and, for models kept in their own framework (an imported model outside edgecnn's graph
vocabulary: toolchain/native.py), NATIVE ({model kind: the precisions made from it}),
NOT_NATIVE ({kind, or (kind, precision): why it cannot be made}) and optionally
export_native(kind, model, ...) where export() does not take that kind as it is.

and the weight bridge between the twins (bridge.py). The device side of the same format
(suffix, title, runner, trust warning, emulation) is its runner in edgecnn.runtime. A
new format is one file here, one runner file, and one line in each registry: FORMATS
below and edgecnn.runtime.RUNNERS.
"""
from __future__ import annotations

import importlib
from typing import NamedTuple

FORMATS = ("tflite", "ptl", "onnx", "pte", "numpy")
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")  # every precision some converter makes, in table order
# Those computed in float, as fp32 is (fp16 holds float16 weights that the runtime turns
# back into float32): another machine must match their outputs to 1e-4, not only top-1.
FLOAT_PRECISIONS = ("fp32", "fp16")
# Those whose quantizer calibrates activation ranges on images; the others are made from
# the weights alone (dynamic range quantizes weights, and activations as they come).
CALIBRATED = ("int8",)
# The option every int8 converter takes: {conv2d or dense layer: the names folded into
# it}, the layers to keep in float (export --float-layers); its manifest note lists them.
FLOAT_LAYERS = "float_layers"
# The other option every int8 converter takes: how its quantizer estimates activation
# ranges from the calibration images, one of the converter's CALIBRATIONS (its default
# first); export --calibration picks it where the quantizer offers it.
CALIBRATION = "calibration"
# The third: how finely int8 weights are scaled, one scale per output channel (the
# default) or one per layer; export --weight-granularity. Every int8 quantizer offers both.
GRANULARITY = "weight_granularity"
GRANULARITIES = ("per-channel", "per-tensor")
# The fourth: how int8 weights are rounded onto the quantizer's own scales: "gptq" keeps
# each layer's output on the calibration images close to float (rounding.py), "nearest"
# rounds each weight to its nearest step, as the quantizers do; export --weight-rounding.
ROUNDING = "weight_rounding"
ROUNDINGS = ("gptq", "nearest")
# Not an option: the rounding.Rounder whose integers an int8 converter writes over its
# quantizer's for every layer it quantizes, given when ROUNDING is "gptq" and the model
# is edgecnn's graph; None otherwise.
ROUNDER = "rounder"
# Not an option but a dict an int8 converter may keep state in between calls that differ
# only in FLOAT_LAYERS (repair's steps, explain's one-layer variants: the same model,
# calibration images and other options), so that it calibrates once for all of them.
# What it keeps on disk has a cleanup() that the caller (toolchain.convert.maker) calls.
CACHE = "cache"


def rounding_of(options: dict) -> str:
    """How an int8 converter was asked to round its weights, the default when it was not."""
    return options.get(ROUNDING) or ROUNDINGS[0]


def rounded_by(options: dict) -> str:
    """How an int8 converter's weights were rounded: by GPTQ when it was given a rounder."""
    return ROUNDINGS[0] if options.get(ROUNDER) is not None else "nearest"


def granularity(options: dict) -> str:
    """The weight granularity an int8 converter was asked for, the default when none was."""
    return options.get(GRANULARITY) or GRANULARITIES[0]


# the kinds of model kept in their own framework, as converters receive them: a Keras
# model, a torch.export program (wrapped as an nn.Module) and an ONNX file's path
NATIVE_KINDS = {"keras": "a Keras model", "torch": "a torch.export program", "onnx": "an ONNX file"}
UNAVAILABLE = "unavailable"  # a manifest entry's status for a format that cannot be made from such a model


class Option(NamedTuple):
    """A converter's own export option: `--NAME` on the command line, passed to its
    export() as options[NAME]."""
    name: str
    choices: tuple
    default: str
    help: str


def converter(fmt: str):
    if fmt not in FORMATS:
        raise KeyError(fmt)
    return importlib.import_module(f"{__name__}.{fmt}")


def made_from(twin: str) -> tuple[str, ...]:
    """The formats converted from this twin ("torch", "keras" or "numpy")."""
    return tuple(f for f in FORMATS if converter(f).TWIN == twin)


def default_formats() -> tuple[str, ...]:
    return tuple(f for f in FORMATS if getattr(converter(f), "DEFAULT", True))


def options() -> dict[str, Option]:
    """Every converter's options by name, for the CLI and for export's defaults."""
    found = {}
    for f in FORMATS:
        for opt in getattr(converter(f), "OPTIONS", ()):
            if opt.name in found:
                raise RuntimeError(f"two converters define the export option {opt.name!r}")
            found[opt.name] = opt
    return found


def not_native(fmt: str, kind: str, precision: str) -> str | None:
    """Why `fmt` at `precision` cannot be made from a model of this native kind, or None
    when it can."""
    conv = converter(fmt)
    if precision in getattr(conv, "NATIVE", {}).get(kind, ()):
        return None
    why = getattr(conv, "NOT_NATIVE", {})
    return (why.get((kind, precision)) or why.get(kind)
            or f"{fmt} {precision} is made from edgecnn's graph only, and {NATIVE_KINDS[kind]} is not one")


def export_native(fmt: str, kind: str, model, precision: str, calib, path, options: dict) -> dict:
    """Make `fmt` from a model kept in its own framework (not_native says it can)."""
    conv = converter(fmt)
    if hasattr(conv, "export_native"):
        return conv.export_native(kind, model, precision, calib, path, options)
    return conv.export(model, precision, calib, path, options)


def calibrations() -> tuple[str, ...]:
    """Every range estimator some int8 quantizer offers, in registry order."""
    return tuple(dict.fromkeys(c for f in FORMATS for c in getattr(converter(f), "CALIBRATIONS", ())))


def calibration_for(fmt: str, asked: str | None) -> str | None:
    """The range estimator `fmt` uses for int8: the one asked for where its quantizer
    offers it, else its own default."""
    offered = getattr(converter(fmt), "CALIBRATIONS", ())
    return asked if asked in offered else (offered[0] if offered else None)

"""edgecnn.converters: one module per artifact format, each with the same surface:

    FORMAT, SUFFIX, TWIN ("torch", "keras" or "numpy": which twin it converts from),
    PRECISIONS, LAYOUT, export(model, precision, calib, path, options) -> metadata

and the weight bridge between the twins (bridge.py). A new format is one file and one
line in FORMATS.
"""
from __future__ import annotations

import importlib

FORMATS = ("tflite", "ptl", "onnx", "numpy")


def converter(fmt: str):
    if fmt not in FORMATS:
        raise KeyError(fmt)
    return importlib.import_module(f"{__name__}.{fmt}")

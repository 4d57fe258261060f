"""How a model's raw uint8 images become its input: the `scaling` of spec.json and the
manifest, and, for a model edgecnn did not train, what its user declares.

    divide_by = 255.0          # every pixel first, as edgecnn trains
    mean = [0.485, 0.456, 0.406]   # optional, per channel, after the division
    std = [0.229, 0.224, 0.225]    # given with mean

A user declares it with flags (--divide-by, --mean, --std) or in a TOML file beside the
model, named as the model file plus `.toml` (`mine.onnx.toml` for `mine.onnx`). Flags
override the file.
"""
from __future__ import annotations

import math
import tomllib
from pathlib import Path

from .errors import BadInput, brief

DEFAULT = {"input_dtype": "uint8", "divide_by": 255.0, "range": [0.0, 1.0]}
KEYS = ("divide_by", "mean", "std")


def _positive(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v) and v > 0


def check(scaling, channels: int | None, where: str) -> dict:
    """`scaling` checked; BadInput naming `where` and the problem. Mean and std come
    together, one number per channel (or one for all)."""
    if not isinstance(scaling, dict):
        raise BadInput(f"{where} is not a table of {', '.join(KEYS)}")
    if not _positive(scaling.get("divide_by", 255.0)):
        raise BadInput(f"{where}: divide_by must be a positive number, not {scaling.get('divide_by')!r}")
    mean, std = scaling.get("mean"), scaling.get("std")
    if (mean is None) != (std is None):
        raise BadInput(f"{where}: mean and std come together; give both or neither")
    if mean is not None:
        for name, values in (("mean", mean), ("std", std)):
            if not isinstance(values, list) or not values or not all(
                    type(v) in (int, float) and math.isfinite(v) for v in values):
                raise BadInput(f"{where}: {name} must be a list of numbers, one per channel")
            if channels and len(values) not in (1, channels):
                raise BadInput(f"{where}: {name} has {len(values)} values but the images have {channels} channels")
        if not all(v > 0 for v in std):
            raise BadInput(f"{where}: std values must be positive")
    return scaling


def for_job(scaling: dict) -> dict:
    """What the harness applies (runtime/evaluate.py's scale)."""
    return {k: scaling[k] for k in KEYS if scaling.get(k) is not None} or {"divide_by": 255.0}


def declared(model_path: Path | None, divide_by=None, mean=None, std=None) -> dict:
    """The preprocessing a user declared for a model file: its TOML beside it, then the
    flags over it; edgecnn's own (divide by 255) when neither says anything. A bad value
    is refused naming where it came from."""
    scaling, source = dict(DEFAULT), "the default (divide by 255)"
    toml = model_path.with_name(model_path.name + ".toml") if model_path else None
    if toml and toml.is_file():
        try:
            doc = tomllib.loads(toml.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise BadInput(f"{toml} is not valid TOML ({brief(e)})") from None
        unknown = sorted(set(doc) - set(KEYS))
        if unknown:
            raise BadInput(f"{toml}: unknown key {unknown[0]!r}; it holds {', '.join(KEYS)}")
        scaling.update(doc)
        source = str(toml)
    flags = {"divide_by": divide_by, "mean": _numbers(mean, "--mean"), "std": _numbers(std, "--std")}
    if any(v is not None for v in flags.values()):
        scaling.update({k: v for k, v in flags.items() if v is not None})
        source = "flags" if source.startswith("the default") else f"{source} and flags"
    if scaling.get("mean") is not None or scaling["divide_by"] != 255.0:
        scaling.pop("range", None)  # no longer [0, 1]
    return check(scaling, None, source)


def _numbers(text, flag):
    if text is None:
        return None
    try:
        return [float(v) for v in str(text).split(",")]
    except ValueError:
        raise BadInput(f"{flag} {text!r} is not a comma-separated list of numbers") from None

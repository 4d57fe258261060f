"""One run's model made into artifacts. export makes each artifact once; repair makes
its steps, and explain its one-layer variants, again with the same options and
calibration images, differing only in which layers are kept in float.

An artifact's options are recorded in its manifest entry ("options": the converter's
own options, and for int8 the range estimator, weight granularity and weight rounding
its quantizer used), which is how explain makes variants of an artifact export wrote earlier."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edgecnn import converters
from edgecnn.converters import CACHE, CALIBRATION, FLOAT_LAYERS, GRANULARITY, ROUNDER, ROUNDING, bridge, converter
from edgecnn.converters.rounding import Rounder
from edgecnn.runtime import runner_for
from edgecnn.runtime.quiet import quiet

from . import models
from .errors import BadInput

BUILDERS = {"torch": lambda spec: models.build_torch(spec).eval(), "keras": models.build_keras,
            "numpy": models.build_numpy}
BRIDGE_IMAGES = 256


def twins(run, kinds, x_check: np.ndarray, log=None) -> tuple[str, object, dict, list[dict]]:
    """(source kind, source model, {kind: model} for the source and each of `kinds`, the
    bridge's proofs). Each twin is copied from the source through the weight bridge and
    proven against it on the first BRIDGE_IMAGES of `x_check` before anything uses it."""
    source, model = run.load_twin()
    made, proofs = {source: model}, []
    for kind in sorted(set(kinds) - {source}):
        made[kind] = BUILDERS[kind](run.spec)
        bridge.copy_weights(source, model, kind, made[kind], run.spec.graph)
        try:
            diff = bridge.prove(source, model, kind, made[kind], x_check[:BRIDGE_IMAGES])
        except bridge.BridgeError as e:
            raise BadInput(str(e)) from None
        proofs.append({"direction": f"{source} -> {kind}", "images": int(min(len(x_check), BRIDGE_IMAGES)),
                       "max_abs_diff": diff, "tolerance": bridge.TOLERANCE})
        if log:
            log(f"bridge {source} -> {kind}: max abs logit difference {diff:.2e} on {proofs[-1]['images']} "
                f"test images")
    return source, model, made, proofs


def artifact_options(fmt: str, precision: str, options: dict) -> dict:
    """What one artifact is made with, as its manifest entry records it: the converter's
    own options and, for int8, the range estimator its quantizer uses (the one asked for
    where it offers it), the weight granularity and the weight rounding."""
    own = {o.name: options[o.name] for o in getattr(converter(fmt), "OPTIONS", ()) if o.name in options}
    if precision == "int8":
        own[CALIBRATION] = converters.calibration_for(fmt, options.get(CALIBRATION))
        own[GRANULARITY] = converters.granularity(options)
        own[ROUNDING] = converters.rounding_of(options)
    return own


@contextmanager
def maker(run, source: str, model, made: dict, images: np.ndarray, fmt: str, precision: str,
          options: dict, rounders: dict | None = None) -> Iterator[Callable[[dict, Path], dict]]:
    """make(floats, dest): the artifact converted into `dest` with the layers `floats`
    ({layer: its folded chain}) kept in float, proven to load in its runtime; returns
    the converter's metadata. `images`: the calibration images (fp32 converters only
    trace with them). `options`: artifact_options'. Calls share a cache, which the
    quantizers use to calibrate once for every set of float layers; what it holds on
    disk (beside the first `dest`) is removed when the block ends. int8 weights rounded
    by GPTQ (converters.rounding) are rounded once, for every set of float layers, and
    for every format that is given the same `rounders` dict."""
    cache: dict = {}
    rounder = None
    if precision == "int8" and not run.native and converters.rounding_of(options) == "gptq":
        rounders = {} if rounders is None else rounders
        if "gptq" not in rounders:
            rounders["gptq"] = Rounder(run.spec.graph, bridge.arrays_of(source, model, run.spec.graph), images)
        rounder = rounders["gptq"]

    def make(floats: dict, dest: Path) -> dict:
        with warnings.catch_warnings(), quiet():
            warnings.simplefilter("ignore")
            own = dict(options, **{FLOAT_LAYERS: floats, CACHE: cache, ROUNDER: rounder})
            meta = (converters.export_native(fmt, source, model, precision, images, dest, own)
                    if run.native else converter(fmt).export(made[converter(fmt).TWIN], precision, images, dest, own))
            runner_for(fmt, dest).load()  # proves the file loads in its runtime
        return meta
    try:
        yield make
    finally:
        for kept in cache.values():
            if hasattr(kept, "cleanup"):
                kept.cleanup()

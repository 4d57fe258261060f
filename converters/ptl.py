"""TorchScript Lite (.ptl) from the PyTorch twin: traced, then saved for the lite
interpreter. fp32 files are frozen first, so BatchNorm is folded into its convolution.
int8 is eager-mode post-training static quantization with torch.ao: conv+bn(+relu),
conv+relu and linear+relu fused where the graph has them, observers calibrated on the
calibration images.

ReLU6 in int8: a layer that only a ReLU6 reads has its output observed after the
clamp, so its int8 output is [0, 6] at most and the ReLU6 is dropped (_observe_after_clamp).
Any other ReLU6 stays, and qnnpack's quantized relu6 (hardtanh) returns wrong values on
channels_last tensors, which is what its convolutions output (../shared/notes/models.md:
95 % of the range wrong on a MobileNet stem). So each of those makes its input
contiguous first, which costs a copy and gives right answers on both engines.

The quantized engine is recorded inside the .ptl and the lite interpreter runner uses
it, so a qnnpack file runs qnnpack's kernels on an x86 host too, as on the ARM device it
is made for (fbgemm and qnnpack round differently: on a Fashion-MNIST seed CNN they
agreed on 99.97 % of top-1 answers, not all).

Weights are 7-bit ([-64, 63]) on both engines, activations 8-bit. A .ptl is run by
whatever quantized engine the device's PyTorch uses: qnnpack on ARM, but `x86` (fbgemm)
on an x86 machine, whose kernels without VNNI add u8 x s8 pairs into a saturating
int16. With 8-bit weights and activations a pair can reach 255 x 128 x 2 and be
clipped: measured on a Fashion-MNIST seed CNN on an AVX2 host, the int8 file lost 0.79
points there and 0.01 on the qnnpack engine. With weights in [-64, 63] a pair stays
within 255 x 64 x 2 = 32,640 < 32,767 on every engine. The other way to stay below it,
7-bit activations (the x86 engine's own default, used before), agreed less with fp32:
99.03 % against 99.54 % on that CNN, 98.75 % against 98.93 % on the zoo's resnet
(README, "int8 on every CPU")."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from edgecnn.runtime.evaluate import nchw
from edgecnn.runtime.graph import INPUT
from edgecnn.runtime.torchlite import ENGINE_FILE

from . import CALIBRATION, FLOAT_LAYERS, GRANULARITIES, ROUNDER, Option, granularity, rounded_by

TWIN = "torch"
REQUIRES = (("torch",),)
PRECISIONS = ("fp32", "int8")
# a torch.export program traces like any module; torch.ao's eager int8 needs modules
# (../shared/notes/models.md, "Models a user brings")
NATIVE = {"torch": ("fp32",)}
NOT_NATIVE = {
    ("torch", "int8"): "torch.ao int8 quantizes nn.Module layers, and a torch.export program has none; "
                       "only models in edgecnn's graph vocabulary get an int8 ptl",
    "keras": "no Keras-to-PyTorch converter fits this stack",
    "onnx": "nothing in this stack converts ONNX to TorchScript",
}
LAYOUT = "NCHW"
# activation observers: torch.ao's HistogramObserver (the x86 default: ranges that
# minimise the quantization error) or MinMaxObserver
CALIBRATIONS = ("histogram", "minmax")
ENGINES = ("qnnpack", "x86")
ENGINE = Option("engine", ENGINES, "qnnpack",
                "torch.ao engine for int8 TorchScript Lite: qnnpack for ARM devices, x86 for x86.")
OPTIONS = (ENGINE,)
FUSIONS = (("Conv2d", "BatchNorm2d", "ReLU"), ("Conv2d", "BatchNorm2d"), ("Conv2d", "ReLU"), ("Linear", "ReLU"))
# what makes the int8 file answer the same on every engine and CPU, recorded in the manifest
INT8 = {"activations": "uint8, 8-bit range [0, 255]",
        "same_on": "the x86 (fbgemm) engine with and without VNNI, qnnpack",
        "why": "x86 kernels without VNNI add u8 x s8 pairs into a saturating int16; with 7-bit weights a pair "
               "stays within 255 x 64 x 2 = 32,640"}


def _readers(model) -> dict[str, list[str]]:
    """Each module of the twin's graph (its `order`), and the image, with the modules that read its output."""
    readers: dict[str, list[str]] = {}
    for name, inputs in model.order:
        for s in inputs:
            readers.setdefault(s, []).append(name)
    return readers


def fusions(model) -> list[list[str]]:
    """The chains of modules torch.ao can fuse, read from the twin's graph (its `order`):
    each link is the only input of the next, and the only reader of its output."""
    order, readers = dict(model.order), _readers(model)

    def kind(name):
        return type(getattr(model, name)).__name__

    out, taken = [], set()
    for name, _ in model.order:
        for pattern in FUSIONS:
            chain = [name]
            while len(chain) < len(pattern):
                nxt = readers.get(chain[-1], [])
                if len(nxt) != 1 or order[nxt[0]] != (chain[-1],):
                    break
                chain.append(nxt[0])
            if len(chain) == len(pattern) and tuple(map(kind, chain)) == pattern and not taken & set(chain):
                out.append(chain)
                taken |= set(chain)
                break
    return out


WEIGHT_RANGE = (-64, 63)  # 7 bits: see the module's note


def _qconfig(ranges: str, scales: str):
    """8-bit activations, ranged by a histogram (torch.ao's x86 default) or by min and
    max; symmetric 7-bit weights, one scale per output channel or per layer."""
    import torch
    import torch.ao.quantization as tq
    observer = tq.HistogramObserver if ranges == "histogram" else tq.MinMaxObserver
    weights = (tq.PerChannelMinMaxObserver.with_args(qscheme=torch.per_channel_symmetric) if scales == "per-channel"
               else tq.MinMaxObserver.with_args(qscheme=torch.per_tensor_symmetric))
    low, high = WEIGHT_RANGE
    return tq.QConfig(activation=observer.with_args(reduce_range=False),
                      weight=weights.with_args(dtype=torch.qint8, quant_min=low, quant_max=high))


def _quantized(model, calib_nchw, engine: str, floats=(), ranges: str = CALIBRATIONS[0],
               scales: str = GRANULARITIES[0], rounder=None):
    import torch
    import torch.ao.quantization as tq

    class Wrapped(torch.nn.Module):
        def __init__(self, body):
            super().__init__()
            self.quant, self.body, self.dequant = tq.QuantStub(), body, tq.DeQuantStub()

        def forward(self, x):
            return self.dequant(self.body(self.quant(x)))

    class ContiguousReLU6(torch.nn.Module):
        """ReLU6 on a contiguous copy of its input: see the module's note on qnnpack."""

        def forward(self, x):
            return torch.nn.functional.hardtanh(x.contiguous(), 0.0, 6.0)

    body = tq.fuse_modules(copy.deepcopy(model).eval(), fusions(model))
    for name, module in list(body.named_children()):
        if isinstance(module, torch.nn.ReLU6):
            setattr(body, name, ContiguousReLU6())
    # A float layer runs between a dequantize and a quantize of its own. When every
    # reader of the image (through zero padding) is float, the image itself stays float:
    # quantizing it first (to 8 bits, as every activation here) would throw away what the
    # float layer is kept for; and a float layer that makes the output is not quantized
    # after it.
    graph_readers, readers, todo = _readers(model), [], [INPUT]
    while todo:
        for name in graph_readers.get(todo.pop(), []):
            (todo if isinstance(getattr(model, name), torch.nn.ZeroPad2d) else readers).append(name)
    float_image = bool(floats) and all(r in floats for r in readers)
    float_output = any(model.output in chain for chain in floats.values())
    for name, chain in floats.items():  # a fused chain is named by its first module: the layer itself
        module = getattr(body, name)
        module.qconfig = None
        steps = ([] if float_image and name in readers else [tq.DeQuantStub()]) + [module] + (
            [] if model.output in chain else [tq.QuantStub()])
        setattr(body, name, torch.nn.Sequential(*steps))
    wrapped = Wrapped(body).eval()
    if float_image:
        wrapped.quant = torch.nn.Identity()
    if float_output:
        wrapped.dequant = torch.nn.Identity()
    torch.backends.quantized.engine = engine
    # One config for both engines (_qconfig): qnnpack's kernels take per-channel 7-bit
    # weights as fbgemm's do (checked: the lite interpreter runs them on either engine).
    wrapped.qconfig = _qconfig(ranges, scales)
    prepared = tq.prepare(wrapped)
    _observe_after_clamp(model, prepared.body)
    with torch.inference_mode():
        for i in range(0, len(calib_nchw), 100):
            prepared(calib_nchw[i:i + 100])
    converted = tq.convert(prepared)
    if rounder is not None:
        _round(converted.body, rounder, floats)
    return converted


def _observer(module):
    """The observer of a prepared module's output: its own, or its last child's (a fused
    BatchNorm's Identity has none; a float layer's closing QuantStub, an Add's FloatFunctional)."""
    if hasattr(module, "activation_post_process"):
        return module.activation_post_process
    children = list(module.children())
    return _observer(children[-1]) if children else None


def _observe_after_clamp(model, body) -> None:
    """The output of each layer that only a ReLU6 reads (through a folded BatchNorm's
    Identity) observed after the clamp: the int8 layer then writes [0, 6] at most, as
    TFLite's converter and ONNX Runtime's quantizer range a conv before a relu6. torch.ao
    fuses only ReLU into the layer before it; a ReLU6 shares its input's quantization, so
    the layer's output would be observed before the clamp and half of its int8 range
    would cover negative values that the clamp sets to 0 (on the zoo's mobilenet, top-1
    agreement with fp32 99.14 % against 99.39 %). The ReLU6 itself is then replaced by an
    Identity: the int8 layer's output is already clamped, to the same integers. A hook on
    the observer, written here: torch.ao's eager mode has no conv+relu6 fusion."""
    import torch
    readers, producers = _readers(model), dict(model.order)
    for name, inputs in model.order:
        if not isinstance(getattr(model, name), torch.nn.ReLU6):
            continue
        reader, src = name, inputs[0]
        while isinstance(getattr(body, src, None), torch.nn.Identity) and readers[src] == [reader]:
            reader, src = src, producers[src][0]
        observer = _observer(getattr(body, src)) if src in producers else None  # not the image
        if observer is not None and readers[src] == [reader]:
            observer.register_forward_pre_hook(lambda _, args: (args[0].clamp(0.0, 6.0),))
            setattr(body, name, torch.nn.Identity())


def _round(body, rounder, floats) -> None:
    """Each quantized layer's integers replaced by the rounder's for its own scales."""
    import torch
    low, high = WEIGHT_RANGE
    for name in rounder.layers(floats):
        module = getattr(body, name)  # a fused chain is named by its conv or linear
        w = module.weight()
        if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            scale = w.q_per_channel_scales().numpy()
            q = torch.from_numpy(rounder.torch_integers(name, scale, low, high))
            new = torch._make_per_channel_quantized_tensor(q, w.q_per_channel_scales(),
                                                           w.q_per_channel_zero_points(), w.q_per_channel_axis())
        else:
            q = torch.from_numpy(rounder.torch_integers(name, w.q_scale(), low, high))
            new = torch._make_per_tensor_quantized_tensor(q, w.q_scale(), w.q_zero_point())
        module.set_weight_bias(new, module.bias())


def export(torch_model, precision: str, calib: np.ndarray, path: Path, options: dict) -> dict:
    import torch
    from torch.utils.mobile_optimizer import optimize_for_mobile

    calib_nchw = torch.from_numpy(nchw(calib))
    notes: dict = {}
    model = copy.deepcopy(torch_model).eval()
    if precision == "int8":
        engine = options.get(ENGINE.name, ENGINE.default)
        if engine not in ENGINES:
            raise ValueError(f"unknown quantization engine {engine!r}; choose {', '.join(ENGINES)}")
        floats = options.get(FLOAT_LAYERS) or {}
        ranges = options.get(CALIBRATION) or CALIBRATIONS[0]
        scales = granularity(options)
        model = _quantized(model, calib_nchw, engine, floats, ranges, scales, options.get(ROUNDER))
        notes.update(engine=engine, per_channel_weights=scales == "per-channel",
                     quantization=f"static, fused conv+relu and linear+relu, relu6 ranged after its clamp, "
                                  f"7-bit {scales} weights ({rounded_by(options)} rounding), 8-bit activations, "
                                  f"{ranges} observers",
                     int8=dict(INT8, weights=f"int8 {scales}, 7-bit range [{WEIGHT_RANGE[0]}, {WEIGHT_RANGE[1]}]"))
        if floats:
            notes[FLOAT_LAYERS] = list(floats)
    with torch.inference_mode():
        scripted = torch.jit.trace(model, calib_nchw[:1])
    if precision == "fp32":
        scripted = torch.jit.freeze(scripted)  # folds BatchNorm into the convolutions
        notes["frozen"] = True
    try:
        scripted = optimize_for_mobile(scripted)
        notes["optimize_for_mobile"] = "applied"
    except Exception as e:  # this torch build lacks XNNPACK: save unoptimised, and say so
        notes["optimize_for_mobile"] = f"not applied: {' '.join(str(e).split())[:200]}"
    # the engine travels inside the file, so every machine runs the kernels it was made for
    extra = {ENGINE_FILE: json.dumps({"engine": notes["engine"]})} if "engine" in notes else {}
    # to bytes, then written by Python: torch's own file writer aborts the process when the
    # disk fills (SIGABRT), where a Python write raises an error that export reports
    path.write_bytes(scripted._save_to_buffer_for_lite_interpreter(_extra_files=extra))
    return {"converter": "torch.jit.trace + _save_to_buffer_for_lite_interpreter",
            "versions": {"torch": torch.__version__}, "layout": LAYOUT, "notes": notes}

"""TFLite (.tflite) from the Keras twin, with TensorFlow's own TFLite converter:
fp32, dynamic-range (int8 weights, float activations), and full integer int8 with int8
input and output, calibrated on a representative dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.runtime.quiet import quiet

TWIN = "keras"
REQUIRES = (("tensorflow", "tensorflow-cpu"),)
PRECISIONS = ("fp32", "dynamic", "int8")
LAYOUT = "NHWC"


def export(keras_model, precision: str, calib: np.ndarray, path: Path, options: dict) -> dict:
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    notes = {}
    if precision in ("dynamic", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "int8":
        def representative():
            for i in range(len(calib)):
                yield [calib[i:i + 1]]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        notes["quantization"] = "full integer, per-channel weights, int8 input and output"
    elif precision == "dynamic":
        notes["quantization"] = "dynamic range: int8 weights, float activations"
    with quiet():  # the converter prints a SavedModel dump on stdout
        blob = converter.convert()
    path.write_bytes(blob)
    return {"converter": "tf.lite.TFLiteConverter.from_keras_model",
            "versions": {"tensorflow": tf.__version__}, "layout": LAYOUT, "notes": notes}

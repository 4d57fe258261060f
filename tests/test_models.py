"""The twin CNN: same layers, same parameter count, in both frameworks."""
import numpy as np
import pytest

from edgecnn.toolchain import models
from edgecnn.toolchain.errors import BadInput

TEN = [str(i) for i in range(10)]


def test_twins_have_the_same_parameter_count_on_mnist_shape():
    spec = models.ModelSpec("cnn", (28, 28, 1), TEN)
    torch_params = models.count_params_torch(models.build_torch(spec))
    keras_params = models.build_keras(spec).count_params()
    # conv 3*3*1*32+32, conv 3*3*32*64+64, dense 7*7*64*128+128, dense 128*10+10
    assert torch_params == keras_params == 320 + 18496 + 401536 + 1290


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1), (32, 32, 3), (13, 9, 1)])
def test_twins_take_any_reasonable_input_shape(shape):
    import torch
    spec = models.ModelSpec("cnn", shape, ["a", "b", "c"])
    t = models.build_torch(spec)
    k = models.build_keras(spec)
    assert models.count_params_torch(t) == k.count_params()
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    assert t(torch.from_numpy(x.transpose(0, 3, 1, 2))).shape == (2, 3)
    assert k(x).shape == (2, 3)


def test_spec_round_trips_through_json_with_its_scaling():
    spec = models.ModelSpec("cnn", (8, 8, 1), TEN)
    d = spec.to_json()
    assert d["scaling"]["divide_by"] == 255.0 and d["input_shape"] == [8, 8, 1]
    assert models.ModelSpec.from_json(d) == spec


def test_too_small_input_is_refused():
    with pytest.raises(BadInput, match="from 4x4 to 1024x1024, got 3x3"):
        models.build_torch(models.ModelSpec("cnn", (3, 3, 1), TEN))

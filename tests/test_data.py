"""Datasets: the real files, each source format, and every way a file can be wrong."""
import gzip
import json
import shutil

import numpy as np
import pytest
from conftest import edgecnn
from PIL import Image

from edgecnn.toolchain import data, idx
from edgecnn.toolchain.errors import BadInput

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_digits_is_the_offline_default():
    d = data.load("digits")
    assert d.x_train.dtype == np.uint8 and d.x_train.shape[1:] == (8, 8, 1)
    assert len(d.x_train) + len(d.x_test) == 1797
    assert d.classes == [str(i) for i in range(10)]
    assert d.x_train.max() == 255
    # the split is fixed: loading twice gives the same test images
    again = data.load("digits")
    assert np.array_equal(d.x_test, again.x_test) and np.array_equal(d.y_test, again.y_test)
    # stratified: every class is in the test split in proportion
    assert np.bincount(d.y_test).min() >= 30


def test_mnist_from_shared_data(shared_data):
    d = data.load("mnist", shared_data)
    assert d.x_train.shape == (60000, 28, 28, 1) and d.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(d.y_test).tolist() == MNIST_TEST_COUNTS
    assert d.x_train.mean() == pytest.approx(33.318, abs=1e-3)


def test_fashion_mnist_from_env(shared_data, monkeypatch):
    monkeypatch.setenv("EDGECNN_DATA_DIR", str(shared_data))
    d = data.load("fashion-mnist")
    assert d.x_train.shape == (60000, 28, 28, 1)
    assert d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot"
    assert np.bincount(d.y_test).tolist() == [1000] * 10


def test_data_dir_is_searched_before_env(shared_data, tmp_path, monkeypatch):
    broken = tmp_path / "mnist"
    broken.mkdir()
    for f in idx.FILES:
        (broken / f).write_bytes(b"not the real file")
    monkeypatch.setenv("EDGECNN_DATA_DIR", str(shared_data))
    with pytest.raises(BadInput, match="checksum mismatch"):
        data.load("mnist", tmp_path)


def test_not_found_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECNN_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(BadInput) as e:
        data.load("mnist", tmp_path / "given")
    msg = str(e.value)
    for place in ("given", "env", "cache/edgecnn/datasets"):
        assert place in msg


def test_download_verifies_checksums(shared_data, tmp_path):
    """The real download code, pointed at a local file:// mirror."""
    target = tmp_path / "cache" / "mnist"
    idx.fetch(idx.SOURCES["mnist"], (shared_data / "mnist").as_uri() + "/", target)
    assert sorted(p.name for p in target.iterdir()) == sorted(idx.FILES)
    idx.verify(target, idx.SOURCES["mnist"])

    # a mirror serving a corrupt file: refused, and nothing kept under the final name
    bad_mirror = tmp_path / "bad"
    shutil.copytree(shared_data / "mnist", bad_mirror)
    raw = (bad_mirror / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (bad_mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(raw[:-10])
    target2 = tmp_path / "cache2" / "mnist"
    with pytest.raises(BadInput, match="checksum mismatch"):
        idx.fetch(idx.SOURCES["mnist"], bad_mirror.as_uri() + "/", target2)
    assert not (target2 / "t10k-labels-idx1-ubyte.gz").exists()
    assert not [p for p in target2.iterdir() if p.name.endswith(".part")]


def _write_idx(path, array, magic_type=0x08, ndim=None, gz=True):
    ndim = array.ndim if ndim is None else ndim
    header = bytes([0, 0, magic_type, ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def _idx_dataset(folder, n_train=40, n_test=20, size=10, classes=3):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, size, size)))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % classes)
    return folder


def test_idx_folder_source(tmp_path):
    d = data.load(f"idx:{_idx_dataset(tmp_path / 'set')}")
    assert d.x_train.shape == (40, 10, 10, 1) and d.classes == ["0", "1", "2"]


def test_idx_wrong_magic(tmp_path):
    folder = _idx_dataset(tmp_path / "set")
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((20, 10, 10)), magic_type=0x0D)
    with pytest.raises(BadInput, match="not unsigned bytes"):
        data.load(f"idx:{folder}")
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x12\x34\x56\x78" + bytes(64)))
    with pytest.raises(BadInput, match="bad magic number"):
        data.load(f"idx:{folder}")


def test_idx_truncated_and_corrupt_gzip(tmp_path):
    folder = _idx_dataset(tmp_path / "set")
    f = folder / "train-images-idx3-ubyte.gz"
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BadInput, match="gzip"):
        data.load(f"idx:{folder}")
    f.write_bytes(b"\x1f\x8b" + bytes(100))
    with pytest.raises(BadInput, match="gzip"):
        data.load(f"idx:{folder}")
    # a well-formed gzip whose IDX payload is shorter than its header says
    _write_idx(f, np.zeros((40, 10, 10)))
    f.write_bytes(gzip.compress(gzip.decompress(f.read_bytes())[:-7]))
    with pytest.raises(BadInput, match="has 4009 bytes"):
        data.load(f"idx:{folder}")


def test_idx_labels_out_of_range(tmp_path):
    folder = _idx_dataset(tmp_path / "set")
    labels = np.arange(20) % 3
    labels[5] = 200
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    # no class names in an idx: folder, so 0..199 are classes; the train split has only 3
    d = data.load(f"idx:{folder}")
    assert d.num_classes == 201
    # MNIST has ten named classes: a label of 10 is out of range
    with pytest.raises(BadInput, match="out of range"):
        data._finish("mnist", d.x_train, d.y_train, d.x_test, d.y_test, [str(i) for i in range(10)])


def test_npz_source(tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "set.npz"
    np.savez(p, x_train=rng.random((30, 12, 12, 3)), y_train=np.arange(30) % 2,
             x_test=rng.random((10, 12, 12, 3)), y_test=np.arange(10) % 2,
             classes=np.array(["cat", "dog"]))
    d = data.load(f"npz:{p}")
    assert d.x_train.shape == (30, 12, 12, 3) and d.x_train.dtype == np.uint8
    assert d.classes == ["cat", "dog"]
    np.savez(p, x_train=np.zeros((4, 8, 8)), y_train=[0, 1, 0, 5], x_test=np.zeros((2, 8, 8)),
             y_test=[0, 1], classes=np.array(["a", "b"]))
    with pytest.raises(BadInput, match="label 5 is out of range"):
        data.load(f"npz:{p}")
    np.savez(p, x_train=np.zeros((4, 8, 8)))
    with pytest.raises(BadInput, match="lacks y_train"):
        data.load(f"npz:{p}")
    p.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(BadInput, match="not a readable .npz"):
        data.load(f"npz:{p}")


def _csv_rows(n=40, side=4, classes=2):
    rng = np.random.default_rng(2)
    return [[i % classes, *rng.integers(0, 256, side * side)] for i in range(n)]


def test_csv_source_is_split_stratified_and_seeded(tmp_path):
    p = tmp_path / "set.csv"
    p.write_text("label," + ",".join(f"p{i}" for i in range(16)) + "\n"
                 + "\n".join(",".join(map(str, r)) for r in _csv_rows()) + "\n")
    d = data.load(f"csv:{p}")
    assert d.x_train.shape == (32, 4, 4, 1) and len(d.x_test) == 8
    assert np.bincount(d.y_test).tolist() == [4, 4]
    assert np.array_equal(d.x_test, data.load(f"csv:{p}").x_test)


def test_csv_rows_of_rgb_pixels_are_colour_images(tmp_path):
    """A row of side x side x 3 values (H, W, C order) is an RGB image."""
    p = tmp_path / "rgb.csv"
    rows = [[i % 2, *np.random.default_rng(i).integers(0, 256, 4 * 4 * 3)] for i in range(20)]
    p.write_text("\n".join(",".join(map(str, r)) for r in rows) + "\n")
    d = data.load(f"csv:{p}")
    assert d.input_shape == (4, 4, 3)
    first = d.x_train[0].reshape(-1).tolist()
    assert any(first == r[1:] for r in rows)


@pytest.mark.parametrize("mutate, message", [
    (lambda rows: rows[:3] + [rows[3][:-2]] + rows[4:], "line 4 has 15 columns"),
    (lambda rows: rows[:5] + [[rows[5][0], "abc", *rows[5][2:]]] + rows[6:], "line 6 has a non-numeric"),
    (lambda rows: rows[:2] + [[-1, *rows[2][1:]]] + rows[3:], "out of range"),
    (lambda rows: rows[:2] + [[0, 300, *rows[2][2:]]] + rows[3:], "0..255"),
])
def test_csv_bad_rows(tmp_path, mutate, message):
    p = tmp_path / "bad.csv"
    p.write_text("\n".join(",".join(map(str, r)) for r in mutate(_csv_rows())) + "\n")
    with pytest.raises(BadInput, match=message):
        data.load(f"csv:{p}")


def test_folder_source(tmp_path):
    rng = np.random.default_rng(3)
    for cls in ("circle", "square"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png")
    d = data.load(f"folder:{tmp_path / 'imgs'}")
    assert d.classes == ["circle", "square"] and d.x_train.shape == (16, 16, 16, 1)
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / "imgs" / "square" / "x.png")
    with pytest.raises(BadInput, match="is 8x8 .HxW. but .* is 16x16; pass --resize 16x16"):
        data.load(f"folder:{tmp_path / 'imgs'}")


def test_empty_folder(tmp_path):
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(BadInput, match="no class sub-folders"):
        data.load(f"folder:{tmp_path / 'empty'}")


def test_unknown_dataset():
    with pytest.raises(BadInput, match="unknown dataset 'cifar'"):
        data.load("cifar")


def _png_folder(root, split_images: dict):
    """{class name: uint8 HW images} written as class sub-folders of PNGs under `root`."""
    from PIL import Image
    for name, imgs in split_images.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(imgs):
            Image.fromarray(img).save(root / name / f"{i}.png")


def test_a_folder_with_train_and_test_is_that_split(tmp_path):
    rng = np.random.default_rng(0)
    img = lambda n: [rng.integers(0, 256, (5, 5), dtype=np.uint8) for _ in range(n)]  # noqa: E731
    _png_folder(tmp_path / "set" / "train", {"cat": img(4), "dog": img(3)})
    _png_folder(tmp_path / "set" / "test", {"dog": img(2)})
    ds = data.load(f"folder:{tmp_path / 'set'}")
    assert ds.classes == ["cat", "dog"] and len(ds.x_train) == 7 and len(ds.x_test) == 2
    assert list(ds.y_test) == [1, 1] and "test" in ds.test_from
    _png_folder(tmp_path / "set" / "test", {"fox": img(1)})
    with pytest.raises(BadInput, match="test/fox is a class that train/ does not have"):
        data.load(f"folder:{tmp_path / 'set'}")


def test_a_named_test_set_is_scored_whole_and_by_class_name(digits_artifacts, tmp_path):
    """60 images in 3 of the model's 10 class folders: all 60 are scored, each against
    its class by name, and the table says how many and from where."""
    ds = data.load("digits")
    pick = {str(c): [ds.x_test[ds.y_test == c][i, :, :, 0] for i in range(20)] for c in (0, 3, 7)}
    _png_folder(tmp_path / "test60", pick)
    r = edgecnn("validate", digits_artifacts, "--dataset", f"folder:{tmp_path / 'test60'}", "--formats", "onnx",
                "--precisions", "fp32", "--bench-runs", "5", "--bench-seconds", "0")
    assert r.code == 0, r
    assert "scored: 60 images of folder:" in r.out and "(all 60 images)" in r.out
    r = edgecnn("validate", digits_artifacts, "--dataset", f"folder:{tmp_path / 'test60'}", "--formats", "onnx",
                "--precisions", "fp32", "--bench-runs", "5", "--bench-seconds", "0", "--json")
    row = r.json["results"][0]
    assert row["samples"] == 60 and row["test_images_from"] == "all 60 images"
    # relabelled by name: scoring these 60 as classes 0, 1, 2 would put accuracy near 1/3 at best
    assert row["accuracy"] > 0.9 and row["per_class_accuracy"][3] > 0.8 and row["per_class_accuracy"][1] is None


def test_resize_makes_a_folder_of_mixed_sizes_one_size(tmp_path):
    """Refused without --resize; with it, train resizes (bilinear), and export and
    validate read the folder at the size training recorded."""
    from PIL import Image
    ds = data.load("digits")
    for c in range(3):
        (tmp_path / "mixed" / f"d{c}").mkdir(parents=True)
        for i, img in enumerate(ds.x_train[ds.y_train == c][:30]):
            im = Image.fromarray(img[:, :, 0])
            (im.resize((16, 16)) if i % 2 else im).save(tmp_path / "mixed" / f"d{c}" / f"{i}.png")
    name = f"folder:{tmp_path / 'mixed'}"
    assert_bad = edgecnn("train", "--dataset", name, "--epochs", "1", "--out", tmp_path / "r0")
    assert assert_bad.code == 2 and "all images must be one size" not in assert_bad.err and "--resize" in assert_bad.err
    r = edgecnn("pipeline", "--framework", "torch", "--dataset", name, "--resize", "12x12", "--epochs", "2",
                "--formats", "onnx", "--out", tmp_path / "p", "--bench-runs", "5", "--bench-seconds", "0", "--json")
    assert r.code == 0, r
    run = json.loads((tmp_path / "p" / "runs" / "torch" / "run.json").read_text())
    assert run["resize"] == [12, 12]
    art = tmp_path / "p" / "artifacts" / "torch"
    assert json.loads((art / "manifest.json").read_text())["model"]["input_shape"] == [12, 12, 1]
    assert r.json["results"][0]["samples"] == 18 and r.json["results"][0]["agreement"] == 1.0
    v = edgecnn("validate", art, "--dataset", "digits")
    assert v.code == 2 and "--resize" not in v.err  # not a folder: no resize to offer
    assert edgecnn("train", "--dataset", "digits", "--resize", "12x12", "--out", tmp_path / "r1").code == 2

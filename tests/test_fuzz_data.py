"""Fuzz: the dataset loaders (IDX, CSV, npz, image folders) on damaged and mistyped
files. Each ends in a usable dataset or one clear BadInput line; see fuzzing.py."""
import gzip
import io
import shutil

import numpy as np
import pytest
from fuzzing import FUZZ_EXAMPLES, FUZZ_TIMEOUT_S, assert_covered, corrupted, fuzz_settings, outcome
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from edgecnn.toolchain import data
from edgecnn.toolchain.errors import BadInput

pytestmark = pytest.mark.timeout(FUZZ_TIMEOUT_S)


def check_dataset(ds) -> None:
    """What a loader that returns must have made: NHWC uint8 images, one size, labels
    in range, at least two classes."""
    assert isinstance(ds, data.Dataset)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[-1] in (1, 3) and len(x) > 0
        assert y.dtype == np.int64 and y.shape == (len(x),)
        assert y.min() >= 0 and y.max() < ds.num_classes
    assert ds.x_train.shape[1:] == ds.x_test.shape[1:]
    assert ds.num_classes >= 2 and all(isinstance(c, str) for c in ds.classes)


def run_case(name: str, cases: list) -> None:
    result = outcome(data.load, name)
    if not isinstance(result, BadInput):
        check_dataset(result)
    cases.append(result)


def images(n: int, side: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side), dtype=np.uint8)


# -- IDX -------------------------------------------------------------------------------
def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def test_fuzz_idx(tmp_path):
    x_tr, x_te = images(30, 6, 0), images(12, 6, 1)
    y_tr, y_te = np.arange(30, dtype=np.uint8) % 3, np.arange(12, dtype=np.uint8) % 3
    files = {"train-images-idx3-ubyte": idx_bytes(x_tr), "train-labels-idx1-ubyte": idx_bytes(y_tr),
             "t10k-images-idx3-ubyte": idx_bytes(x_te), "t10k-labels-idx1-ubyte": idx_bytes(y_te)}
    # gzip's header holds a time stamp: mtime=0 makes the seeds the same every run
    gz = {k: gzip.compress(v, mtime=0) for k, v in files.items()}
    folder = tmp_path / "idx"
    cases = []

    @fuzz_settings
    @given(which=st.sampled_from(sorted(files)), compressed=st.booleans(), damage=st.data())
    def case(which, compressed, damage):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for stem, raw in gz.items():
            (folder / f"{stem}.gz").write_bytes(raw)
        seed = gz[which] if compressed else files[which]
        bad = damage.draw(corrupted(seed))
        if not compressed:
            (folder / f"{which}.gz").unlink()
        (folder / (f"{which}.gz" if compressed else which)).write_bytes(bad)
        run_case(f"idx:{folder}", cases)

    case()
    assert_covered(cases)


# -- CSV -------------------------------------------------------------------------------
TOKENS = ("", " ", "nan", "inf", "-inf", "-1", "256", "1e400", "3.5", "abc", "9" * 40, "1e18",
          '"', "\x00", "0x10", "\u00e9", "2" * 200_000)


def test_fuzz_csv(tmp_path):
    x = images(30, 4, 2).reshape(30, -1)
    rows = [["label"] + [f"p{i}" for i in range(16)]] + \
           [[str(i % 3)] + [str(int(v)) for v in row] for i, row in enumerate(x)]
    seed = "\n".join(",".join(r) for r in rows).encode()
    path = tmp_path / "set.csv"
    cases = []

    @st.composite
    def edited(draw):
        """A cell replaced by a troublesome token, a row cut short, or a row added."""
        grid = [list(r) for r in rows]
        for _ in range(draw(st.integers(1, 4))):
            r = draw(st.integers(0, len(grid) - 1))
            action = draw(st.sampled_from(("cell", "cell", "cut", "extend")))
            if action == "cell" and grid[r]:
                grid[r][draw(st.integers(0, len(grid[r]) - 1))] = draw(st.sampled_from(TOKENS))
            elif action == "cut":
                grid[r] = grid[r][:draw(st.integers(0, len(grid[r])))]
            else:
                grid[r] = grid[r] + [draw(st.sampled_from(TOKENS)) for _ in range(draw(st.integers(1, 20)))]
        return "\n".join(",".join(r) for r in grid).encode("utf-8", "surrogatepass")

    @fuzz_settings
    @given(content=st.one_of(corrupted(seed), edited()))
    def case(content):
        path.write_bytes(content)
        run_case(f"csv:{path}", cases)

    case()
    assert_covered(cases)


# -- npz -------------------------------------------------------------------------------
KEYS = ("x_train", "y_train", "x_test", "y_test", "classes")
DTYPES = (np.uint8, np.int8, np.int64, np.uint64, np.float16, np.float32, np.float64, np.bool_,
          np.complex64, "U3", "S2", np.dtype([("a", "u1"), ("b", "<f4")]))


def npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_fuzz_npz(tmp_path):
    arrays = {"x_train": images(30, 5, 3), "y_train": np.arange(30) % 3,
              "x_test": images(9, 5, 4), "y_test": np.arange(9) % 3, "classes": np.array(["a", "b", "c"])}
    seed = npz_bytes(arrays)
    path = tmp_path / "set.npz"
    cases = []

    any_array = hnp.arrays(dtype=st.sampled_from(DTYPES),
                           shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6))

    @st.composite
    def retyped(draw):
        """One array replaced by one of any dtype and shape, removed, or an object
        array (which only a pickle can hold)."""
        out = dict(arrays)
        key = draw(st.sampled_from(KEYS))
        action = draw(st.sampled_from(("array", "array", "remove", "object", "extreme")))
        if action == "remove":
            del out[key]
        elif action == "object":
            out[key] = np.array([{"x": 1}, None], dtype=object)
        elif action == "extreme":
            out[key] = np.full(out[key].shape, draw(st.sampled_from((-1, 255, 256, 2**31, 2**62))),
                               dtype=np.int64)
        else:
            out[key] = draw(any_array)
        return npz_bytes(out)

    @fuzz_settings
    @given(content=st.one_of(corrupted(seed), retyped()))
    def case(content):
        path.write_bytes(content)
        run_case(f"npz:{path}", cases)

    case()
    assert_covered(cases)


# -- image folders ---------------------------------------------------------------------
def png(array: np.ndarray, mode=None, fmt="PNG") -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format=fmt)
    return buf.getvalue()


# valid images that differ from the rest: another mode, size or format
ODD_IMAGES = {  # kind: (mode, size, fill, format)
    "rgb": ("RGB", (6, 6), (10, 200, 30), "PNG"),
    "rgba": ("RGBA", (6, 6), (10, 200, 30, 128), "PNG"),
    "palette": ("P", (6, 6), 3, "PNG"),
    "16bit": ("I;16", (6, 6), 40000, "PNG"),
    "grey+alpha": ("LA", (6, 6), (90, 10), "PNG"),
    "1bit": ("1", (6, 6), 1, "PNG"),
    "cmyk-jpeg": ("CMYK", (6, 6), (0, 50, 100, 0), "JPEG"),
    "bigger": ("L", (7, 5), 9, "PNG"),
    "gif-named-png": ("L", (6, 6), 9, "GIF"),
}


def odd_image(kind: str) -> bytes:
    from PIL import Image
    mode, size, fill, fmt = ODD_IMAGES[kind]
    buf = io.BytesIO()
    Image.new(mode, size, fill).save(buf, format=fmt)
    return buf.getvalue()


def test_fuzz_image_folder(tmp_path):
    pristine = tmp_path / "pristine"
    for c in range(3):
        (pristine / f"class{c}").mkdir(parents=True)
        for i in range(6):
            (pristine / f"class{c}" / f"{i}.png").write_bytes(png(images(1, 6, 10 * c + i)[0]))
    seed_png = (pristine / "class0" / "0.png").read_bytes()
    folder = tmp_path / "set"
    cases = []
    odd = st.sampled_from(sorted(ODD_IMAGES))

    @fuzz_settings
    @given(target=st.tuples(st.integers(0, 2), st.integers(0, 5)),
           content=st.one_of(corrupted(seed_png), odd.map(odd_image)),
           layout=st.sampled_from(("as is", "as is", "as is", "empty class", "one class", "stray files")))
    def case(target, content, layout):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(pristine, folder)
        c, i = target
        (folder / f"class{c}" / f"{i}.png").write_bytes(content)
        if layout == "empty class":
            (folder / "empty").mkdir()
        elif layout == "one class":
            for d in ("class1", "class2"):
                shutil.rmtree(folder / d)
        elif layout == "stray files":
            (folder / "README.txt").write_text("not an image")
            (folder / "class0" / "nested").mkdir()
            (folder / "class0" / "notes.jpg").write_bytes(b"")
        run_case(f"folder:{folder}", cases)

    case()
    assert_covered(cases)


# -- what an image file holds, read faithfully ------------------------------------------
# EXIF orientation -> what a viewer does to the stored pixels to stand them upright
ORIENTED = {1: lambda a: a, 2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud,
            5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
            7: lambda a: a[::-1, ::-1].swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}


def encoded(kind: str, grey: np.ndarray, rgb: np.ndarray, orientation: int) -> tuple[bytes, np.ndarray, int]:
    """A PNG of `kind` holding the pixels, what a person sees in it as uint8, and its channels."""
    from PIL import Image
    if kind == "16-bit grey":  # 16-bit samples whose top byte is the grey value, and noise below it
        im, want, ch = Image.fromarray(grey.astype(np.uint16) * 257), grey, 1
    elif kind == "grey+alpha":
        im, want, ch = Image.fromarray(np.stack([grey, 255 - grey], -1)), grey, 1
    elif kind == "grey palette":
        im = Image.fromarray(grey).convert("P")  # an adaptive palette of greys
        im, want, ch = im, grey, 1
    elif kind == "colour palette":
        levels = (rgb // 64) * 64  # few enough colours for a palette to hold them exactly
        im, want, ch = Image.fromarray(levels).quantize(colors=256, method=Image.Quantize.FASTOCTREE), levels, 3
    elif kind == "rgba":
        im, want, ch = Image.fromarray(np.concatenate([rgb, grey[..., None]], -1)), rgb, 3
    else:  # plain grey or RGB
        im, want, ch = (Image.fromarray(grey), grey, 1) if kind == "grey" else (Image.fromarray(rgb), rgb, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="PNG", exif=exif)
    return buf.getvalue(), ORIENTED[orientation](want), ch


def test_fuzz_images_read_as_a_person_sees_them(tmp_path):
    """16-bit, grey+alpha, palette and EXIF-rotated files: the pixels read are the
    pixels shown, in the channels the file holds, and converted to the other count as
    a model with the other count would take them."""
    from edgecnn.toolchain import images as reading
    cases = []
    path = tmp_path / "image.png"

    @fuzz_settings
    @given(kind=st.sampled_from(("16-bit grey", "grey+alpha", "grey palette", "colour palette", "rgba", "grey", "rgb")),
           h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 2**16), orientation=st.integers(1, 8))
    def case(kind, h, w, seed, orientation):
        rng = np.random.default_rng(seed)
        grey = rng.integers(0, 256, (h, w), dtype=np.uint8)
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        content, want, channels = encoded(kind, grey, rgb, orientation)
        path.write_bytes(content)
        pair = [(path, reading.open_image(path))]
        got = reading.to_array(pair)[0]
        assert got.shape[-1] == channels, (kind, got.shape)
        assert np.array_equal(got[..., 0] if channels == 1 else got, want), kind
        other = reading.to_array(pair, channels=4 - channels)[0]  # 1 <-> 3
        if channels == 1:
            assert np.array_equal(other, np.repeat(want[..., None], 3, -1))
        else:
            from PIL import Image
            assert np.array_equal(other[..., 0], np.asarray(Image.fromarray(want).convert("L")))
        cases.append((kind, orientation))

    case()
    assert len(cases) >= FUZZ_EXAMPLES
    assert {k for k, _ in cases} >= {"16-bit grey", "grey+alpha", "grey palette", "colour palette"}
    assert {o for _, o in cases} == set(range(1, 9))

"""Checkpoints: exact round trips, atomic writes, and clear refusals of bad files."""

import io
import json
import os
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest

from tensorgrad import checkpoint
from tensorgrad.errors import CheckpointError, TensorgradError


def nested():
    rng = np.random.default_rng(0)
    return {
        "model": {
            "w": rng.standard_normal((3, 4)).astype(np.float32),
            "b": rng.standard_normal(4),
            "ids": np.arange(5, dtype=np.int64),
            "mask": np.array([[True, False], [False, True]]),
            "empty": np.zeros((0, 3), dtype=np.float32),
            "scalar_array": np.array(2.5),
        },
        "optim": {
            "state": {0: {"step": 3, "exp_avg": np.ones(2)}, 7: {"step": 1}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "amsgrad": False,
                              "params": [0, 7]}],
        },
        "flags": [True, False, None],
        "big_int": 2 ** 62,
        "weird_floats": [float("inf"), -0.0, 1e-310, float("nan")],
        "name": "run-1 ünïcode",
        "np_scalars": (np.float32(1.5), np.int16(-3), np.bool_(True), np.float64(0.1),
                       np.str_("hi")),
        "nested_tuple": ((), ([],), {}),
        "zebra": 1,
        "apple": 2.0,
    }


def assert_same_tree(a, b, where="obj"):
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys or their order differ"
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            assert type(ka) is type(kb), f"{where}: key {ka!r} changed type"
            assert_same_tree(va, vb, f"{where}[{ka!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where
        if isinstance(a, float):
            assert np.copysign(1, a) == np.copysign(1, b), where


def test_round_trip_preserves_every_leaf_type_and_order(tmp_path):
    obj = nested()
    path = tmp_path / "ckpt.npz"
    checkpoint.save(obj, path)
    loaded = checkpoint.load(path)
    assert_same_tree(obj, loaded)
    assert list(loaded) == list(obj)
    assert loaded["model"]["w"].flags.writeable


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_, np.uint8,
                                   np.float16, np.complex128])
def test_array_dtypes_round_trip(tmp_path, dtype):
    a = (np.arange(12).reshape(3, 4) % 3).astype(dtype)
    checkpoint.save({"a": a, "t": a.T}, tmp_path / "c.npz")
    loaded = checkpoint.load(tmp_path / "c.npz")
    for key, expected in [("a", a), ("t", a.T)]:
        assert loaded[key].dtype == dtype and loaded[key].shape == expected.shape
        np.testing.assert_array_equal(loaded[key], expected)


def test_objects_with_a_data_array_are_saved_as_that_array(tmp_path):
    weights = {"w": SimpleNamespace(data=np.ones((2, 2), np.float32), grad=None)}
    checkpoint.save(weights, tmp_path / "c.npz")
    loaded = checkpoint.load(tmp_path / "c.npz")
    assert isinstance(loaded["w"], np.ndarray) and loaded["w"].dtype == np.float32


def test_save_takes_str_and_does_not_append_npz(tmp_path):
    path = str(tmp_path / "model.ckpt")
    checkpoint.save({"x": 1}, path)
    assert os.listdir(tmp_path) == ["model.ckpt"]
    assert checkpoint.load(path) == {"x": 1}


def test_overwrite_replaces_the_old_checkpoint(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save({"v": 1}, path)
    checkpoint.save({"v": 2}, path)
    assert checkpoint.load(path) == {"v": 2}
    assert os.listdir(tmp_path) == ["c.npz"]


def test_loaded_file_is_closed(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save({"a": np.ones(3)}, path)
    loaded = checkpoint.load(path)
    os.remove(path)  # everything was read into memory
    np.testing.assert_array_equal(loaded["a"], np.ones(3))


# ---- unsupported values on save ---------------------------------------------------------------


@pytest.mark.parametrize("obj, where, what", [
    ({"model": {"layers": [np.ones(2), object()]}}, r"obj\['model'\]\['layers'\]\[1\]", "object"),
    ({"a": {1.5: 2}}, r"obj\['a'\]\[1.5\]", "float"),
    ({"a": {(1, 2): 2}}, r"obj\['a'\]\[\(1, 2\)\]", "tuple"),
    ({"s": {1, 2}}, r"obj\['s'\]", "set"),
    ({"bytes": b"x"}, r"obj\['bytes'\]", "bytes"),
    ({"objs": np.array([1, "a", None], dtype=object)}, r"obj\['objs'\]", "dtype object"),
    ([SimpleNamespace(data=[1.0])], r"obj\[0\]", "SimpleNamespace"),
])
def test_unsupported_values_name_the_key_path_and_type(tmp_path, obj, where, what):
    with pytest.raises(CheckpointError, match=f"{where}.*{what}"):
        checkpoint.save(obj, tmp_path / "c.npz")
    assert os.listdir(tmp_path) == []


def test_a_cycle_is_refused(tmp_path):
    loop = []
    loop.append(loop)
    with pytest.raises(CheckpointError, match=r"obj\['loop'\]\[0\]\[0\]: it contains itself"):
        checkpoint.save({"x": 1, "loop": [loop]}, tmp_path / "c.npz")


# ---- atomic writes ------------------------------------------------------------------------------


def test_failed_replace_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    checkpoint.save({"v": np.arange(100)}, path)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match="disk on fire"):
        checkpoint.save({"v": np.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]


def test_failure_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    checkpoint.save({"v": np.arange(100)}, path)
    before = path.read_bytes()

    def half_writer(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # even an interrupt must clean up

    monkeypatch.setattr(np, "savez", half_writer)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save({"v": np.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]
    monkeypatch.undo()
    np.testing.assert_array_equal(checkpoint.load(path)["v"], np.arange(100))


def test_unwritable_directory_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no_such_dir"):
        checkpoint.save({"v": 1}, tmp_path / "no_such_dir" / "c.npz")


# ---- bad files on load ----------------------------------------------------------------------


def good_file(tmp_path, name="c.npz"):
    path = tmp_path / name
    checkpoint.save(nested(), path)
    return path


def expect_refusal(path, match):
    with pytest.raises(CheckpointError, match=match) as info:
        checkpoint.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, TensorgradError)
    return info.value


def test_missing_file(tmp_path):
    expect_refusal(tmp_path / "nope.npz", "no such file")


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99, 0.1, 0.0])
def test_truncated_file(tmp_path, fraction):
    path = good_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    error = expect_refusal(path, "truncated, corrupt, not an .npz")
    assert error.__cause__ is not None


def test_every_truncation_is_refused_cleanly(tmp_path):
    path = good_file(tmp_path)
    data = path.read_bytes()
    for n in range(0, len(data), 7):
        path.write_bytes(data[:n])
        with pytest.raises(CheckpointError):
            checkpoint.load(path)


def test_corrupted_array_bytes_are_refused(tmp_path):
    path = good_file(tmp_path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("a0.npy")
    # Flip a byte near the end of the first array's data (past its .npy header).
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size - 3
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    expect_refusal(path, "corrupt")


def test_not_a_zip_at_all(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some text, not a checkpoint\n")
    expect_refusal(path, "not an .npz")


def test_a_lone_npy_file(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones(3))
    expect_refusal(path, "lone .npy")


def test_a_foreign_npz(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, x=np.random.default_rng(0).standard_normal(4), y=np.arange(3))
    expect_refusal(path, "no __manifest__ entry")


def rewrite(path, manifest=None, extra=None, drop=()):
    """Rewrite a checkpoint with a different manifest and/or arrays added or removed."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k not in drop}
    if manifest is not None:
        arrays["__manifest__"] = np.frombuffer(manifest.encode(), dtype=np.uint8)
    arrays.update(extra or {})
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def read_manifest(path):
    with np.load(path) as npz:
        return json.loads(npz["__manifest__"].tobytes())


@pytest.mark.parametrize("edit, match", [
    (lambda m: {**m, "format": "something-else"}, "not a tensorgrad-checkpoint file"),
    (lambda m: {**m, "version": 2}, "version 2 is not supported"),
    (lambda m: {k: v for k, v in m.items() if k != "version"}, "version None"),
    (lambda m: {**m, "tree": {"type": "pickle"}}, "unknown type 'pickle'"),
    (lambda m: {**m, "tree": {"type": "array", "name": "a999", "dtype": "<f8", "shape": [3]}},
     "refers to array 'a999'"),
    (lambda m: {**m, "tree": {"type": "int", "value": "7"}}, "recorded as int"),
    (lambda m: {**m, "tree": {"type": "dict", "items": [[1.5, {"type": "none"}]]}}, "key"),
    (lambda m: {**m, "tree": {"type": "list", "items": 5}}, "corrupt or tampered manifest"),
    (lambda m: {**m, "tree": {"type": "list", "items": [
        {"type": "array", "name": "a0", "dtype": "<f4", "shape": [3, 4]},
        {"type": "array", "name": "a0", "dtype": "<f4", "shape": [3, 4]}]}}, "second time"),
])
def test_tampered_manifest(tmp_path, edit, match):
    path = good_file(tmp_path)
    rewrite(path, manifest=json.dumps(edit(read_manifest(path))))
    expect_refusal(path, match)


def test_manifest_shape_or_dtype_disagreeing_with_the_array(tmp_path):
    path = good_file(tmp_path)
    manifest = read_manifest(path)
    manifest["tree"]["items"][0][1]["items"][0][1]["dtype"] = "<f8"  # model.w is float32
    rewrite(path, manifest=json.dumps(manifest))
    expect_refusal(path, r"obj\['model'\]\['w'\].*manifest says <f8")


def test_manifest_that_is_not_json(tmp_path):
    path = good_file(tmp_path)
    rewrite(path, manifest="{not json")
    expect_refusal(path, "unreadable manifest")


def test_missing_array(tmp_path):
    path = good_file(tmp_path)
    rewrite(path, drop=("a1",))
    expect_refusal(path, "refers to array 'a1', which the file lacks")


def test_extra_array(tmp_path):
    path = good_file(tmp_path)
    rewrite(path, extra={"a99": np.ones(2), "smuggled": np.zeros(1)})
    expect_refusal(path, r"does not describe: \['a99', 'smuggled'\]")


class _Payload:
    """Unpickling this makes a directory: proof that pickled code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("name", ["a0", "evil"])
def test_pickled_data_is_refused_not_executed(tmp_path, name):
    path = good_file(tmp_path)
    marker = str(tmp_path / "pwned")
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    buffer = io.BytesIO()
    np.save(buffer, evil, allow_pickle=True)
    if name == "a0":  # replace a real entry: zipfile appends, so drop the old one first
        rewrite(path, drop=("a0",))
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(f"{name}.npy", buffer.getvalue())

    # The payload does run under a pickle-allowing load; our load must refuse it instead.
    with np.load(path, allow_pickle=True) as npz:
        npz[name]
    assert os.path.isdir(marker)
    os.rmdir(marker)

    expect_refusal(path, "pickled data, which is refused")
    assert not os.path.exists(marker)


def test_a_directory_is_refused(tmp_path):
    expect_refusal(tmp_path, "checkpoint")

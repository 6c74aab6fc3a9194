"""Save and load state dicts as one ``.npz`` file, atomically, and without pickle.

A checkpoint is a tree of dicts (str or int keys, the latter for optimizer state), lists and
tuples whose leaves are NumPy arrays (or objects with a ``.data`` ndarray, such as tensors,
saved as that array), NumPy scalars, Python ints, floats, bools, strings and None. The arrays
go into the archive as ``a0``, ``a1``, ...; a JSON manifest, stored as the uint8 array
``__manifest__``, records the tree, so that types, list vs tuple and key order come back as
they were saved (subclasses such as OrderedDict or a namedtuple come back as the base type).

    checkpoint.save({"params": {"w": w, "b": b}, "optim": opt.state_dict()}, "run/ckpt.npz")
    state = checkpoint.load("run/ckpt.npz")
"""

import json
import logging
import os
import tempfile
import zipfile
import zlib

import numpy as np

from tensorgrad.errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT = "tensorgrad-checkpoint"
VERSION = 1
MANIFEST = "__manifest__"

# Limitation: an array saved twice (or two views of one buffer) loads back as two copies.
# Limitation: files are written with mkstemp's owner-only permissions (0600).


# ---- save --------------------------------------------------------------------------------


def save(obj, path):
    """Write ``obj`` to ``path`` (str or os.PathLike; no ``.npz`` is appended), atomically.

    The data goes to a temporary file in the same directory, is flushed and fsynced, and then
    replaces ``path`` in one step: a failure at any point leaves the old checkpoint intact.
    """
    path = os.fspath(path)
    arrays = {}
    tree = _encode(obj, "obj", arrays, set())
    manifest = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree})
    arrays[MANIFEST] = np.frombuffer(manifest.encode("utf-8"), dtype=np.uint8)

    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                                   suffix=".tmp")
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path}: {err}") from err
    try:
        # Through a file object, since np.savez appends ".npz" to a path that lacks it.
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and not isinstance(err, CheckpointError):
            raise CheckpointError(f"cannot write checkpoint {path}: {err}") from err
        raise
    _fsync_directory(directory)
    log.debug("saved checkpoint %s (%d arrays)", path, len(arrays) - 1)


def _fsync_directory(directory):
    # Makes the rename itself durable on POSIX; not possible (nor needed) everywhere.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _encode(x, where, arrays, open_containers):
    """The manifest node for ``x``; arrays are added to ``arrays`` under fresh names."""
    if isinstance(x, (dict, list, tuple)):
        _refuse(id(x) in open_containers, where, "it contains itself")
        open_containers.add(id(x))
        if isinstance(x, dict):
            items = []
            for key, value in x.items():
                bad_key = not isinstance(key, (str, int)) or isinstance(key, bool)
                _refuse(bad_key, f"{where}[{key!r}]",
                        f"its key has type {type(key).__name__} (keys must be str or int)")
                key = str(key) if isinstance(key, str) else int(key)
                items.append([key, _encode(value, f"{where}[{key!r}]", arrays, open_containers)])
            node = {"type": "dict", "items": items}
        else:
            kind = "list" if isinstance(x, list) else "tuple"
            node = {"type": kind, "items": [_encode(v, f"{where}[{i}]", arrays, open_containers)
                                            for i, v in enumerate(x)]}
        open_containers.discard(id(x))
        return node
    # NumPy scalars first (np.float64 is a float, np.str_ a str), and bool before int.
    if isinstance(x, np.generic):
        return _encode_array(np.asarray(x), where, arrays, "scalar")
    if x is None or isinstance(x, bool):
        return {"type": "none"} if x is None else {"type": "bool", "value": x}
    if isinstance(x, int):
        return {"type": "int", "value": int(x)}
    if isinstance(x, float):
        return {"type": "float", "value": float(x)}
    if isinstance(x, str):
        return {"type": "str", "value": str(x)}
    if isinstance(x, np.ndarray):
        return _encode_array(x, where, arrays, "array")
    if isinstance(getattr(x, "data", None), np.ndarray):
        return _encode_array(x.data, where, arrays, "array")
    raise CheckpointError(f"cannot save {where}: unsupported type {type(x).__name__}")


def _encode_array(a, where, arrays, kind):
    _refuse(a.dtype.hasobject, where, f"it is an array of dtype {a.dtype}, which needs pickle")
    name = f"a{len(arrays)}"
    arrays[name] = a
    return {"type": kind, "name": name, "dtype": a.dtype.str, "shape": list(a.shape)}


def _refuse(bad, where, why):
    if bad:
        raise CheckpointError(f"cannot save {where}: {why}")


# ---- load --------------------------------------------------------------------------------


class _Malformed(Exception):
    """Internal: the manifest does not describe a valid tree."""


def load(path):
    """Read a checkpoint written by ``save``; raise CheckpointError naming the file if it is
    missing, truncated, foreign or tampered with. Pickled data is never loaded.
    """
    path = os.fspath(path)
    arrays, manifest = _read_archive(path)

    def fail(why):
        return CheckpointError(f"checkpoint {path}: {why}")

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise fail(f"not a {FORMAT} file (its manifest has no format {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise fail(f"format version {manifest.get('version')!r} is not supported "
                   f"(this tensorgrad reads version {VERSION})")
    used = set()
    try:
        obj = _decode(manifest["tree"], "obj", arrays, used)
    except _Malformed as err:
        raise fail(f"corrupt or tampered manifest: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as err:
        raise fail(f"corrupt or tampered manifest ({type(err).__name__}: {err})") from err
    extra = sorted(set(arrays) - used)
    if extra:
        raise fail(f"holds arrays the manifest does not describe: {extra} (tampered?)")
    return obj


def _read_archive(path):
    """All arrays of the archive, fully read and with the file closed, and the parsed manifest."""
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise CheckpointError(f"checkpoint {path}: a lone .npy array, not an .npz archive")
        with npz:
            if MANIFEST not in npz.files:
                raise CheckpointError(f"checkpoint {path}: not a tensorgrad checkpoint "
                                      f"(no {MANIFEST} entry; a foreign .npz?)")
            arrays = {name: npz[name] for name in npz.files}
    except CheckpointError:
        raise
    except FileNotFoundError as err:
        raise CheckpointError(f"checkpoint {path}: no such file") from err
    except (EOFError, ValueError, RuntimeError, zipfile.BadZipFile, zlib.error) as err:
        # zipfile, zlib and numpy's own errors for a damaged or foreign file.
        reason = str(err).split(". If you trust")[0]  # NumPy's allow_pickle hint is not ours
        raise CheckpointError(f"checkpoint {path}: truncated, corrupt, not an .npz archive, or "
                              f"holding pickled data, which is refused "
                              f"({type(err).__name__}: {reason})") from err
    except OSError as err:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({err})") from err

    raw = arrays.pop(MANIFEST)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"manifest entry is a {raw.dtype} array of shape {raw.shape}")
        manifest = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as err:
        raise CheckpointError(f"checkpoint {path}: unreadable manifest ({err})") from err
    return arrays, manifest


_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}


def _decode(node, where, arrays, used):
    kind = node["type"]
    if kind == "dict":
        out = {}
        for key, child in node["items"]:
            if type(key) not in (str, int):
                raise _Malformed(f"{where} has a key of type {type(key).__name__}")
            out[key] = _decode(child, f"{where}[{key!r}]", arrays, used)
        return out
    if kind in ("list", "tuple"):
        items = [_decode(child, f"{where}[{i}]", arrays, used)
                 for i, child in enumerate(node["items"])]
        return items if kind == "list" else tuple(items)
    if kind == "none":
        return None
    if kind in _SCALARS:
        value = node["value"]
        if type(value) is not _SCALARS[kind]:
            raise _Malformed(f"{where} is recorded as {kind} but holds {value!r}")
        return _SCALARS[kind](value)
    if kind in ("array", "scalar"):
        return _decode_array(node, where, arrays, used, kind)
    raise _Malformed(f"{where} has unknown type {kind!r}")


def _decode_array(node, where, arrays, used, kind):
    name = node["name"]
    if name not in arrays:
        raise _Malformed(f"{where} refers to array {name!r}, which the file lacks")
    if name in used:
        raise _Malformed(f"{where} refers to array {name!r} a second time")
    used.add(name)
    a = arrays[name]
    if a.dtype.str != node["dtype"] or list(a.shape) != node["shape"]:
        raise _Malformed(f"{where}: array {name!r} is {a.dtype.str} {list(a.shape)}, the manifest "
                         f"says {node['dtype']} {node['shape']}")
    return a[()] if kind == "scalar" else a

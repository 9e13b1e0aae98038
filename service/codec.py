"""Tensor payloads <-> numpy arrays: JSON ``data``, ``b64`` and Triton binary blobs.

All three are row-major; ``b64`` and binary bytes are little-endian. In JSON ``data`` the
non-finite floats travel as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``.

>>> decode_data([1, "NaN"], "FP32", [2])
array([ 1., nan], dtype=float32)
>>> json_data(np.array([1.5, np.inf], np.float32))
[1.5, 'Infinity']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pybase64  # SIMD base64: ~50x faster than the standard library on 16 MiB tensors

from .wire import DATATYPE_ALIASES, DATATYPES

__all__ = ["np_dtype", "datatype_of", "decode_data", "decode_data_raw", "decode_b64", "decode_bytes",
           "json_data", "b64_data", "b64_bytes", "raw_bytes", "TensorDecodeError"]

# R's jsonlite spells them "NaN", "Inf" and "-Inf", and NA (which R torch reads as NaN) "NA".
_SPECIAL = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf, "Inf": np.inf, "-Inf": -np.inf,
            "NA": np.nan}


class TensorDecodeError(ValueError):
    """A payload does not match its declared datatype or shape (the message says how)."""


def np_dtype(datatype: str) -> np.dtype:
    """Little-endian numpy dtype for an OIP datatype name."""
    return np.dtype(DATATYPES[datatype]).newbyteorder("<")


# By dtype object: ``dtype.name`` is computed in Python on every access (about 2 us).
_BY_DTYPE = {np.dtype(name): oip for oip, name in DATATYPES.items()}


def datatype_of(arr: np.ndarray) -> str:
    """OIP name of an array's dtype (float16 -> FP16, ...)."""
    oip = _BY_DTYPE.get(arr.dtype)
    if oip is not None:
        return oip
    try:
        return DATATYPE_ALIASES[arr.dtype.name]  # e.g. a big-endian dtype
    except KeyError:
        raise TypeError(f"dtype {arr.dtype} has no wire datatype") from None


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _replace_specials(data: Any) -> Any:
    if isinstance(data, list):
        return [_replace_specials(x) for x in data]
    if isinstance(data, (int, float)):  # bool is an int
        return data
    if isinstance(data, str):
        try:
            return _SPECIAL[data]
        except KeyError:
            raise TensorDecodeError(
                f"data holds the string {data[:40]!r}; only numbers and \"NaN\", \"Infinity\", "
                "\"-Infinity\" (or R's \"NA\", \"Inf\", \"-Inf\") are allowed") from None
    raise TensorDecodeError(f"data holds {_json_kind(data)}; only numbers and lists are allowed")


def _json_kind(x: Any) -> str:
    return {type(None): "null", dict: "an object"}.get(type(x), type(x).__name__)


def decode_data(data: Any, datatype: str, shape: list[int]) -> np.ndarray:
    """A JSON number or (flat or nested) list as an array of ``datatype`` and ``shape``."""
    with np.errstate(over="ignore"):  # like torch: out-of-range floats become +-inf
        return decode_data_raw(data, datatype, shape)


def decode_data_raw(data: Any, datatype: str, shape: list[int]) -> np.ndarray:
    """:func:`decode_data` for a caller that ignores floating-point overflow itself (under
    ``np.errstate(over="ignore")``, entered once for all of a request's tensors)."""
    if isinstance(data, (dict, str)) and not (isinstance(data, str) and data in _SPECIAL):
        raise TensorDecodeError("data must be a number or a (nested) list of numbers")
    try:
        arr = np.array(data)
        if arr.dtype.kind in "UO":  # strings among the numbers: only the non-finite spellings
            arr = np.array(_replace_specials(data), dtype=np.float64)
    except TensorDecodeError:
        raise
    except (ValueError, TypeError):
        raise TensorDecodeError("data must be a rectangular (nested) list of numbers") from None
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise TensorDecodeError("data must be a rectangular (nested) list of numbers")
    target = np.dtype(DATATYPES[datatype])
    if target.kind == "b" and kind != "b":
        raise TensorDecodeError("a BOOL tensor takes true/false values")
    if target.kind in "iu":
        if kind == "f":
            raise TensorDecodeError(f"an {datatype} tensor takes integer values, got floats")
        if arr.size and kind in "iu":
            info = np.iinfo(target)
            if arr.min() < info.min or arr.max() > info.max:
                raise TensorDecodeError(f"a value is out of range for {datatype}")
    numel = _numel(shape)
    if arr.size != numel:
        raise TensorDecodeError(f"data has {arr.size} elements but shape {list(shape)} needs {numel}")
    if arr.ndim > 1 and list(arr.shape) != list(shape):
        raise TensorDecodeError(f"nested data has shape {list(arr.shape)}, not {list(shape)}")
    return _reshaped(arr.astype(target, copy=False), shape)


def decode_bytes(buf: bytes | memoryview, datatype: str, shape: list[int]) -> np.ndarray:
    """Little-endian row-major bytes as an array (shares memory with ``buf`` when it can)."""
    dt = np_dtype(datatype)
    numel = _numel(shape)
    if len(buf) != numel * dt.itemsize:
        raise TensorDecodeError(f"{len(buf)} bytes do not hold shape {list(shape)} of {datatype} "
                                f"({numel * dt.itemsize} bytes)")
    if dt.kind == "b":
        raw = np.frombuffer(buf, dtype=np.uint8)
        if raw.size and raw.max() > 1:
            raise TensorDecodeError("BOOL bytes must be 0 or 1")
        arr = raw.view(np.bool_)
    else:
        arr = np.frombuffer(buf, dtype=dt)
        if not dt.isnative:
            arr = arr.astype(dt.newbyteorder("="))
    return _reshaped(arr, shape)


def _reshaped(arr: np.ndarray, shape: list[int]) -> np.ndarray:
    try:
        return arr.reshape(shape)
    except ValueError:  # a zero-size shape numpy cannot lay out, e.g. [0, 2**63 - 1]
        raise TensorDecodeError(f"shape {list(shape)} is too big to lay out") from None


def decode_b64(text: str | bytes | memoryview, datatype: str, shape: list[int]) -> np.ndarray:
    """Base64 (a str, or its ASCII bytes) of little-endian row-major bytes as an array (strict:
    no characters outside the alphabet, correct padding)."""
    try:
        raw = pybase64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, and non-ASCII text
        raise TensorDecodeError("b64 is not valid base64") from None
    return decode_bytes(raw, datatype, shape)


_BIG_BYTES = 1 << 16


def all_finite(arr: np.ndarray) -> bool:
    """Whether a float array (not empty) holds no NaN or infinity.

    A big float32 or float64 one is read once, by BLAS: the sum of its squares is finite when
    every element is (a NaN or an infinity makes it NaN or infinity: no square is negative, so
    nothing cancels), and only when that sum overflows are its max and min looked at (NaN
    propagates through both). Neither allocates the boolean temporary of ``np.isfinite(arr)``
    (4 MiB for a 16 MiB float32 tensor), which a small array is checked with (less overhead).

    >>> all_finite(np.array([1.0, np.inf])), all_finite(np.full(1 << 14, 2.0))
    (False, True)
    >>> all_finite(np.full(1 << 14, 3e38, np.float32))  # squares overflow; the values are finite
    True
    """
    if arr.nbytes < _BIG_BYTES:
        return bool(np.isfinite(arr).all())
    if arr.dtype.type in (np.float32, np.float64) and arr.flags.c_contiguous:
        flat = arr.reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(np.dot(flat, flat)):
                return True
    return bool(np.isfinite(np.maximum.reduce(arr, axis=None))
                and np.isfinite(np.minimum.reduce(arr, axis=None)))


def _finite_or_int(arr: np.ndarray) -> bool:
    return arr.dtype.kind != "f" or not arr.size or all_finite(arr)


def json_data(arr: np.ndarray, *, numpy_ok: bool = False) -> Any:
    """The flat ``data`` list of an array (non-finite floats as strings).

    With ``numpy_ok`` a finite array is returned as a flat numpy array for orjson to serialize.
    """
    flat = np.ascontiguousarray(arr).reshape(-1)
    if flat.dtype == np.float16:
        flat = flat.astype(np.float32)  # exact; orjson has no float16
    if _finite_or_int(flat):
        return flat if numpy_ok else flat.tolist()
    out = flat.astype(object)
    out[np.isnan(flat)] = "NaN"
    out[np.isposinf(flat)] = "Infinity"
    out[np.isneginf(flat)] = "-Infinity"
    return out.tolist()


def raw_bytes(arr: np.ndarray) -> memoryview:
    """Little-endian row-major bytes of an array, without a copy when already laid out so."""
    a = np.ascontiguousarray(arr)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and not np.little_endian):
        a = a.astype(a.dtype.newbyteorder("<"))
    return memoryview(a).cast("B")


def b64_data(arr: np.ndarray) -> str:
    return pybase64.b64encode_as_string(raw_bytes(arr))


def b64_bytes(arr: np.ndarray) -> bytes:
    """:func:`b64_data` as ASCII bytes."""
    return pybase64.b64encode(raw_bytes(arr))

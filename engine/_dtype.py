"""Dtypes and torch's type-promotion rules.

Torch promotes in three tiers: dimensioned tensors beat zero-dim tensors, which beat
Python scalars, unless a lower tier brings a higher *category* (bool < int < float).
"""

from __future__ import annotations

import builtins

import numpy as np

__all__ = ["dtype", "float16", "float32", "float64", "int8", "int16", "int32", "int64",
           "uint8", "bool", "get_default_dtype", "result_type", "promote_types", "finfo", "iinfo"]


class dtype:
    """An engine dtype, mirroring ``torch.dtype`` (``engine.float32`` etc.)."""

    __slots__ = ("name", "np", "is_floating_point", "is_complex", "is_signed", "itemsize", "category")

    def __init__(self, name: str, np_type: type, category: int) -> None:
        self.name = name
        self.np = np.dtype(np_type)
        self.category = category  # 0 bool, 1 int, 2 float
        self.is_floating_point = category == 2
        self.is_complex = False
        self.is_signed = category != 0 and name != "uint8"
        self.itemsize = self.np.itemsize

    def __repr__(self) -> str:
        return f"engine.{self.name}"

    def __reduce__(self) -> str:
        return self.name


float16 = dtype("float16", np.float16, 2)
float32 = dtype("float32", np.float32, 2)
float64 = dtype("float64", np.float64, 2)
uint8 = dtype("uint8", np.uint8, 1)
int8 = dtype("int8", np.int8, 1)
int16 = dtype("int16", np.int16, 1)
int32 = dtype("int32", np.int32, 1)
int64 = dtype("int64", np.int64, 1)
bool = dtype("bool", np.bool_, 0)  # noqa: A001 - torch's name

half, float, double, short, int, long = float16, float32, float64, int16, int32, int64  # noqa: A001

_ALL = (float16, float32, float64, uint8, int8, int16, int32, int64, bool)
_BY_NP = {d.np: d for d in _ALL}
_BY_NAME = {d.name: d for d in _ALL}


def from_numpy_dtype(np_dtype: np.dtype) -> dtype:
    try:
        return _BY_NP[np_dtype]
    except KeyError:
        raise TypeError(f"unsupported numpy dtype {np_dtype}") from None


def to_dtype(d: object) -> dtype:
    """Accepts an engine dtype, a numpy dtype or type, or a name such as ``"float32"``."""
    if isinstance(d, dtype):
        return d
    if isinstance(d, str):
        if d in _BY_NAME:
            return _BY_NAME[d]
        raise TypeError(f"unknown dtype {d!r}")
    if d is builtins.float:
        return float32
    if d is builtins.int:
        return int64
    if d is builtins.bool:
        return bool
    return from_numpy_dtype(np.dtype(d))


def get_default_dtype() -> dtype:
    return float32


def promote_types(a: dtype, b: dtype) -> dtype:
    """torch.promote_types: across categories the higher category's dtype wins."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    return _BY_NP[np.promote_types(a.np, b.np)]


def _combine(higher: dtype | None, lower: dtype | None) -> dtype | None:
    if higher is None:
        return lower
    if lower is None or higher.is_floating_point:
        return higher
    if higher is bool or lower.is_floating_point:
        return promote_types(higher, lower)
    return higher


def _scalar_dtype(x: object) -> dtype:
    if isinstance(x, builtins.bool):
        return bool
    if isinstance(x, builtins.int):
        return int64
    if isinstance(x, builtins.float):
        return float32
    raise TypeError(f"unsupported scalar {type(x).__name__}")


def result_type(*args: object) -> dtype:
    """torch.result_type over tensors and Python scalars."""
    dim = zero = wrapped = None
    for a in args:
        if a is None:
            continue
        d = getattr(a, "dtype", None)
        if isinstance(d, dtype):
            if a.ndim:
                dim = d if dim is None else promote_types(dim, d)
            else:
                zero = d if zero is None else promote_types(zero, d)
        else:
            s = _scalar_dtype(a)
            wrapped = s if wrapped is None else promote_types(wrapped, s)
    out = _combine(dim, _combine(zero, wrapped))
    if out is None:
        raise TypeError("result_type needs at least one argument")
    return out


_TYPE_NAMES = {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long",
               "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}


def type_name(dt: np.dtype) -> str:
    """torch's C++ name of a dtype, as in its error messages (Float, Double, Long, ...)."""
    return _TYPE_NAMES.get(dt.name, dt.name)


def tensor_type(dt: np.dtype) -> str:
    """torch's legacy tensor type name of a dtype (``FloatTensor``; ``Tensor`` for another), as
    ``torch.typename`` and its version-counter errors give it."""
    name = _TYPE_NAMES.get(dt.name)
    return "Tensor" if name is None else name + "Tensor"


def _g(x: builtins.float) -> str:
    return f"{x:g}"


class finfo:
    """Machine limits of a floating dtype (``torch.finfo``): ``bits``, ``eps``, ``max``, ``min``,
    ``tiny``, ``smallest_normal``, ``resolution``, ``dtype``.

    >>> engine.finfo(engine.float32).eps
    1.1920928955078125e-07
    """

    def __init__(self, type: dtype | None = None) -> None:  # noqa: A002 (torch's name)
        dt = get_default_dtype() if type is None else type
        if not isinstance(dt, dtype) or not dt.is_floating_point:
            raise TypeError("torch.finfo() requires a floating point input type. Use torch.iinfo to "
                            "handle 'torch.finfo'")
        f = np.finfo(dt.np)
        self.bits = builtins.int(f.bits)
        self.eps, self.max, self.min = builtins.float(f.eps), builtins.float(f.max), builtins.float(f.min)
        self.tiny = self.smallest_normal = builtins.float(f.smallest_normal)
        self.resolution = 10.0 ** -f.precision  # (in double, as torch: numpy rounds it to the dtype)
        self.dtype = dt.name

    def __repr__(self) -> str:
        return (f"finfo(resolution={_g(self.resolution)}, min={_g(self.min)}, max={_g(self.max)}, "
                f"eps={_g(self.eps)}, smallest_normal={_g(self.smallest_normal)}, tiny={_g(self.tiny)}, "
                f"dtype={self.dtype})")


class iinfo:
    """Limits of an integer dtype (``torch.iinfo``): ``bits``, ``max``, ``min``, ``dtype``.

    >>> engine.iinfo(engine.int32).max
    2147483647
    """

    def __init__(self, type: dtype) -> None:  # noqa: A002 (torch's name)
        if isinstance(type, dtype) and type.name == "bool":
            raise TypeError("torch.bool is not supported by torch.iinfo")
        if not isinstance(type, dtype) or type.category != 1:
            raise TypeError("torch.iinfo() requires an integer input type. Use torch.finfo to handle "
                            "'torch.iinfo'")
        i = np.iinfo(type.np)
        self.bits, self.dtype = builtins.int(i.bits), type.name
        self.max, self.min = builtins.int(i.max), builtins.int(i.min)

    def __repr__(self) -> str:
        return f"iinfo(min={_g(self.min)}, max={_g(self.max)}, dtype={self.dtype})"

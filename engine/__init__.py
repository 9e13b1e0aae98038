"""Gradserve's engine: a numpy autograd engine with torch's API and semantics.

>>> import engine
>>> w = engine.tensor(0.5, requires_grad=True)
>>> loss = (w * 3.0 - 1.0) ** 2
>>> engine.autograd_grad(loss, w)
(tensor(3.),)
"""

from __future__ import annotations

from . import (
    _dtype,
    _malloc,
    _tensor_str,
    autograd,  # noqa: E402
    linalg,
    special,
)
from ._autograd import (
    PRIMITIVES,
    backward,
    enable_grad,
    grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from ._dtype import (
    bool,  # noqa: A004
    double,
    dtype,
    finfo,
    float,  # noqa: A004
    float16,
    float32,
    float64,
    get_default_dtype,
    half,
    iinfo,
    int,  # noqa: A004
    int8,
    int16,
    int32,
    int64,
    long,
    promote_types,
    result_type,
    short,
    uint8,
)
from ._tensor_str import set_printoptions
from .ops import OPS, OpInfo
from .ops import top_level as _top_level
from .ops.composite import allclose, equal
from .ops.creation import manual_seed
from .tensor import (
    Size,
    Tensor,
    as_tensor,
    channels_last,
    channels_last_3d,
    contiguous_format,
    from_numpy,
    is_tensor,
    memory_format,
    numel,
    preserve_format,
    tensor,
)

# Read once every module that registers ops is imported: linalg's aliases det, inverse, ... are
# top-level names too.
_ops_namespace = _top_level()
globals().update(_ops_namespace)

from . import func, nn, optim  # noqa: E402  (after the core ops they build on)
from ._compile import CompileWarning, compile  # noqa: E402, A004
from ._threads import get_num_threads, set_num_threads  # noqa: E402

# keep freed activation-sized buffers for the next step (glibc; see engine/_malloc.py)
_malloc.tune()

autograd_grad = grad
autograd_backward = backward

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Size", "tensor", "nn", "optim", "as_tensor", "from_numpy", "dtype", "autograd",
    "autograd_grad", "autograd_backward", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
    "manual_seed", "OPS", "OpInfo", "PRIMITIVES", "result_type", "promote_types",
    "get_default_dtype", "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "bool", "half", "float", "double", "short", "int", "long", "_dtype", "_tensor_str",
    "linalg", "special", "func", "compile", "CompileWarning", "get_num_threads", "set_num_threads",
    "memory_format", "contiguous_format", "preserve_format", "channels_last", "channels_last_3d",
    "allclose", "equal", "finfo", "iinfo", "is_tensor", "numel", "inference_mode", "set_printoptions",
    *sorted(_ops_namespace),
]

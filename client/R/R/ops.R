# R torch's API over recorded ops: operators, math and summary functions, $methods, indexing,
# torch_* and nnf_* functions. Dims are 1-based as in R torch (negative ones count from the end);
# the wire is 0-based.

.dim0 <- function(d) {
  if (is.null(d)) return(NULL)
  d <- as.integer(d)
  if (any(d == 0L)) stop("Indexing starts at 1 but found a 0.", call. = FALSE)
  r <- ifelse(d > 0L, d - 1L, d)
  if (length(r) == 1L) r else I(r)
}

# A numeric vector or array in an operation is a tensor (as in R torch); a single number stays a
# number (a Python scalar for the engine's type promotion).
.lift <- function(v) {
  if (.is_tensor(v) || is.null(v) || is.list(v) || inherits(v, "gradserve_dtype")) return(v)
  if ((is.numeric(v) || is.logical(v)) && (length(v) != 1L || !is.null(dim(v)))) return(torch_tensor(v))
  v
}

.sizes <- function(...) {
  s <- unlist(list(...))
  I(as.integer(s))
}

# An operand of an arithmetic operator: a double scalar stays a float (see .json_float).
.operand <- function(v) {
  if (is.double(v) && length(v) == 1L && is.null(dim(v)) && is.finite(v)) return(.json_float(v))
  .lift(v)
}

# ---------------------------------------------------------------- operators
.BINARY <- c("+" = "add", "-" = "sub", "*" = "mul", "/" = "div", "^" = "pow", "%%" = "remainder",
             "==" = "eq", "!=" = "ne", "<" = "lt", "<=" = "le", ">" = "gt", ">=" = "ge",
             "&" = "logical_and", "|" = "logical_or")

#' @export
Ops.gradserve_tensor <- function(e1, e2) {
  if (missing(e2)) {
    return(switch(.Generic, "-" = .record("neg", list(e1)), "+" = e1,
                  "!" = .record("logical_not", list(e1), differentiable = FALSE),
                  stop(sprintf("unary %s is not supported on tensors", .Generic), call. = FALSE)))
  }
  if (.Generic == "%/%") {
    return(.record("div", list(.operand(e1), .operand(e2)), list(rounding_mode = "floor")))
  }
  op <- .BINARY[[.Generic]]
  .record(op, list(.operand(e1), .operand(e2)), differentiable = !op %in% c("eq", "ne", "lt", "le", "gt", "ge",
                                                                         "logical_and", "logical_or"))
}

#' Matrix product
#'
#' `x %*% y` is `torch_matmul(x, y)` when either is a tensor, base R's product otherwise.
#' @param x,y Tensors, matrices or vectors.
#' @export
`%*%` <- function(x, y) {
  if (.is_tensor(x) || .is_tensor(y)) return(.record("matmul", list(.lift(x), .lift(y))))
  base::`%*%`(x, y)
}

.MATH <- c(abs = "abs", sign = "sign", sqrt = "sqrt", floor = "floor", ceiling = "ceil", trunc = "trunc",
           round = "round", exp = "exp", log = "log", expm1 = "expm1", log1p = "log1p", log2 = "log2",
           log10 = "log10", cos = "cos", sin = "sin", tan = "tan", acos = "acos", asin = "asin",
           atan = "atan", cosh = "cosh", sinh = "sinh", tanh = "tanh", lgamma = "lgamma",
           digamma = "digamma")

#' @export
Math.gradserve_tensor <- function(x, ...) {
  op <- .MATH[.Generic]
  if (is.na(op)) stop(sprintf("%s() is not supported on tensors", .Generic), call. = FALSE)
  if (.Generic == "log" && length(list(...))) return(.record("log", list(x)) / log(list(...)[[1]]))
  .record(op[[1]], list(x))
}

#' @export
Summary.gradserve_tensor <- function(..., na.rm = FALSE) {
  x <- list(...)[[1]]
  switch(.Generic, sum = .record("sum", list(x)), prod = .record("prod", list(x)),
         max = .record("max", list(x)), min = .record("min", list(x)),
         stop(sprintf("%s() is not supported on tensors", .Generic), call. = FALSE))
}

#' @export
mean.gradserve_tensor <- function(x, ...) .record("mean", list(x))

#' @export
t.gradserve_tensor <- function(x) .record("t", list(x))

# ---------------------------------------------------------------- indexing
.index <- function(i, drop) {
  if (.is_tensor(i)) return(i)
  if (is.logical(i) && length(i) > 1L) return(torch_tensor(i))
  i <- as.integer(i)
  if (any(i == 0L)) stop("Indexing starts at 1 but found a 0.", call. = FALSE)
  if (length(i) == 1L) {
    z <- if (i > 0L) i - 1L else i
    return(if (drop) z else list(slice = list(z, if (z == -1L) NULL else z + 1L, NULL)))
  }
  if (all(i > 0L) && all(diff(i) == 1L)) return(list(slice = list(i[1] - 1L, i[length(i)], NULL)))
  torch_tensor(ifelse(i > 0L, i - 1L, i))  # any other vector: advanced indexing
}

#' @export
`[.gradserve_tensor` <- function(x, ..., drop = TRUE) {
  n <- nargs() - 1L - !missing(drop)
  args <- as.list(sys.call())[-c(1L, 2L)]
  if (!is.null(names(args))) args <- args[names(args) != "drop"]
  key <- vector("list", n)
  for (k in seq_len(n)) {
    if (identical(args[[k]], quote(expr = ))) {
      key[[k]] <- list(slice = list(NULL, NULL, NULL))
    } else {
      key[[k]] <- .index(eval(args[[k]], parent.frame()), drop)
    }
  }
  .record("getitem", list(x, list(tuple = key)))
}

# ---------------------------------------------------------------- $ methods and properties
.reduce <- function(op) {
  function(self, dim = NULL, keepdim = FALSE, ...) {
    .record(op, list(self), c(list(dim = .dim0(dim), keepdim = if (is.null(dim)) NULL else keepdim), list(...)))
  }
}

.minmax <- function(op) {
  function(self, dim = NULL, keepdim = FALSE, other = NULL) {
    if (!is.null(other)) return(.record(if (op == "max") "maximum" else "minimum", list(self, .lift(other))))
    if (is.null(dim)) return(.record(op, list(self)))
    out <- .record(op, list(self), list(dim = .dim0(dim), keepdim = keepdim), n_outputs = 2L)
    list(out[[1]], out[[2]] + 1L)  # R torch's indices are 1-based
  }
}

.unary <- function(op) function(self) .record(op, list(self))
.binary <- function(op) function(self, other) .record(op, list(self, .lift(other)))

.METHODS <- list(
  add = function(self, other, alpha = 1) .record("add", list(self, .lift(other)), if (alpha != 1) list(alpha = alpha)),
  sub = function(self, other, alpha = 1) .record("sub", list(self, .lift(other)), if (alpha != 1) list(alpha = alpha)),
  mul = .binary("mul"), div = .binary("div"), pow = function(self, exponent) .record("pow", list(self, .lift(exponent))),
  matmul = .binary("matmul"), mm = .binary("mm"), mv = .binary("mv"), dot = .binary("dot"),
  maximum = .binary("maximum"), minimum = .binary("minimum"), atan2 = .binary("atan2"),
  eq = .binary("eq"), ne = .binary("ne"), lt = .binary("lt"), le = .binary("le"), gt = .binary("gt"),
  ge = .binary("ge"),
  sum = .reduce("sum"), mean = .reduce("mean"), prod = .reduce("prod"),
  logsumexp = function(self, dim, keepdim = FALSE) .record("logsumexp", list(self), list(dim = .dim0(dim), keepdim = keepdim)),
  std = function(self, dim = NULL, unbiased = TRUE, keepdim = FALSE) {
    .record("std", list(self), list(dim = .dim0(dim), correction = as.integer(unbiased), keepdim = keepdim))
  },
  var = function(self, dim = NULL, unbiased = TRUE, keepdim = FALSE) {
    .record("var", list(self), list(dim = .dim0(dim), correction = as.integer(unbiased), keepdim = keepdim))
  },
  max = .minmax("max"), min = .minmax("min"),
  argmax = function(self, dim = NULL, keepdim = FALSE) {
    .record("argmax", list(self), list(dim = .dim0(dim), keepdim = keepdim), differentiable = FALSE) + 1L
  },
  argmin = function(self, dim = NULL, keepdim = FALSE) {
    .record("argmin", list(self), list(dim = .dim0(dim), keepdim = keepdim), differentiable = FALSE) + 1L
  },
  softmax = function(self, dim) .record("softmax", list(self), list(dim = .dim0(dim))),
  log_softmax = function(self, dim) .record("log_softmax", list(self), list(dim = .dim0(dim))),
  cumsum = function(self, dim) .record("cumsum", list(self), list(dim = .dim0(dim))),
  cumprod = function(self, dim) .record("cumprod", list(self), list(dim = .dim0(dim))),
  clamp = function(self, min = NULL, max = NULL) .record("clamp", list(self), list(min = min, max = max)),
  t = .unary("t"),
  transpose = function(self, dim0, dim1) .record("transpose", list(self, .dim0(dim0), .dim0(dim1))),
  reshape = function(self, shape) .record("reshape", list(self, .sizes(shape))),
  view = function(self, size) .record("view", list(self, .sizes(size))),
  expand = function(self, size) .record("expand", list(self, .sizes(size))),
  permute = function(self, dims) .record("permute", list(self, I(as.integer(dims) - 1L))),
  flatten = function(self, start_dim = 1L, end_dim = -1L) {
    .record("flatten", list(self), list(start_dim = .dim0(start_dim), end_dim = .dim0(end_dim)))
  },
  squeeze = function(self, dim = NULL) .record("squeeze", list(self), list(dim = .dim0(dim))),
  unsqueeze = function(self, dim) .record("unsqueeze", list(self, .dim0(dim))),
  detach = .unary("detach"), clone = .unary("clone"),
  to = function(self, dtype = NULL, ...) .record("to", list(self), list(dtype = .wire_dtype(dtype))),
  float = function(self) .record("to", list(self), list(dtype = "FP32")),
  double = function(self) .record("to", list(self), list(dtype = "FP64")),
  half = function(self) .record("to", list(self), list(dtype = "FP16")),
  long = function(self) .record("to", list(self), list(dtype = "INT64")),
  int = function(self) .record("to", list(self), list(dtype = "INT32")),
  bool = function(self) .record("to", list(self), list(dtype = "BOOL")),
  relu = .unary("relu"), sigmoid = .unary("sigmoid"), tanh = .unary("tanh"), exp = .unary("exp"),
  log = .unary("log"), sqrt = .unary("sqrt"), abs = .unary("abs"), neg = .unary("neg"),
  square = .unary("square"), rsqrt = .unary("rsqrt"), sin = .unary("sin"), cos = .unary("cos"),
  reciprocal = .unary("reciprocal"), log1p = .unary("log1p"), expm1 = .unary("expm1"),
  # values and metadata
  item = function(self) {
    st <- .value(self)
    if (length(st$value) != 1L) {
      stop(sprintf("a Tensor with %d elements cannot be converted to Scalar", length(st$value)), call. = FALSE)
    }
    as_array(self)[[1]]
  },
  numel = function(self) length(self),
  dim = function(self) length(.value(self)$shape),
  size = function(self, dim = NULL) {
    s <- .value(self)$shape
    if (is.null(dim)) s else s[[if (dim > 0) dim else length(s) + dim + 1L]]
  },
  requires_grad_ = function(self, requires_grad = TRUE) {
    .set_requires_grad(self, requires_grad)
    invisible(self)
  },
  print = function(self, n = 30) print(self, n = n),
  backward = function(self, ...) {
    stop("tensors of a Gradserve connection keep no .grad: use autograd_grad(outputs, inputs)", call. = FALSE)
  }
)

.set_requires_grad <- function(self, value) {
  st <- .st(self)
  if (!is.null(st$node)) stop("you can only change requires_grad flags of leaf variables.", call. = FALSE)
  if (value && !.is_float(st$dtype)) stop("Only Tensors of floating point dtype can require gradients", call. = FALSE)
  st$requires_grad <- isTRUE(value)
}

.PROPERTIES <- list(
  shape = function(self) .value(self)$shape,
  dtype = function(self) .dtype(.value(self)$dtype),
  requires_grad = function(self) isTRUE(.st(self)$requires_grad),
  is_leaf = function(self) is.null(.st(self)$node) || !isTRUE(.st(self)$requires_grad),
  grad_fn = function(self) {
    st <- .st(self)
    if (is.null(st$node) || !isTRUE(st$requires_grad)) NULL else .grad_fn_name(st$node$op)
  },
  ndim = function(self) length(.value(self)$shape),
  grad = function(self) {
    stop("tensors of a Gradserve connection keep no $grad: use autograd_grad(outputs, inputs)", call. = FALSE)
  },
  device = function(self) "cpu"
)

#' @export
`$.gradserve_tensor` <- function(x, name) {
  prop <- .PROPERTIES[[name]]
  if (!is.null(prop)) return(prop(x))
  m <- .METHODS[[name]]
  if (!is.null(m)) return(function(...) m(x, ...))
  # any other engine op by name, with positional inputs and keyword attributes as given
  function(...) {
    args <- list(...)
    named <- if (is.null(names(args))) rep(FALSE, length(args)) else names(args) != ""
    .record(name, c(list(x), lapply(args[!named], .lift)), args[named])
  }
}

#' @export
`$<-.gradserve_tensor` <- function(x, name, value) {
  if (name != "requires_grad") stop(sprintf("cannot set %s of a tensor", name), call. = FALSE)
  .set_requires_grad(x, value)
  x
}

#' @export
.DollarNames.gradserve_tensor <- function(x, pattern = "") {
  grep(pattern, c(names(.PROPERTIES), names(.METHODS)), value = TRUE)
}

# Tensors: leaves hold their values; op results hold the recorded op (a node) and get their
# values from the server when asked for (printing, as_array(), dim()). A tensor is an empty list
# whose attribute "st" is an environment with its state, so that a value fetched once is kept.

# ---------------------------------------------------------------- dtypes
.DTYPES <- list(
  FP32 = list(name = "Float", wire = "FP32"), FP64 = list(name = "Double", wire = "FP64"),
  FP16 = list(name = "Half", wire = "FP16"), INT32 = list(name = "Int", wire = "INT32"),
  INT64 = list(name = "Long", wire = "INT64"), BOOL = list(name = "Bool", wire = "BOOL")
)

.dtype <- function(wire) structure(.DTYPES[[wire]], class = "gradserve_dtype")

#' Tensor data types, as R torch names them
#'
#' @return A dtype for `torch_tensor(dtype = )` and `$to(dtype = )`.
#' @examples
#' torch_float64()
#' @name dtypes
#' @export
torch_float32 <- function() .dtype("FP32")
#' @rdname dtypes
#' @export
torch_float <- torch_float32
#' @rdname dtypes
#' @export
torch_float64 <- function() .dtype("FP64")
#' @rdname dtypes
#' @export
torch_double <- torch_float64
#' @rdname dtypes
#' @export
torch_float16 <- function() .dtype("FP16")
#' @rdname dtypes
#' @export
torch_half <- torch_float16
#' @rdname dtypes
#' @export
torch_int32 <- function() .dtype("INT32")
#' @rdname dtypes
#' @export
torch_int <- torch_int32
#' @rdname dtypes
#' @export
torch_int64 <- function() .dtype("INT64")
#' @rdname dtypes
#' @export
torch_long <- torch_int64
#' @rdname dtypes
#' @export
torch_bool <- function() .dtype("BOOL")

#' @export
print.gradserve_dtype <- function(x, ...) {
  cat("torch_", x$name, "\n", sep = "")
  invisible(x)
}

#' @export
format.gradserve_dtype <- function(x, ...) paste0("torch_", x$name)

#' @export
`==.gradserve_dtype` <- function(e1, e2) identical(e1$wire, e2$wire)

.wire_dtype <- function(dtype) {
  if (is.null(dtype)) return(NULL)
  if (inherits(dtype, "gradserve_dtype")) return(dtype$wire)
  stop("dtype must be one of torch_float(), torch_double(), torch_half(), torch_int(), ",
       "torch_long(), torch_bool()", call. = FALSE)
}

.is_float <- function(wire) wire %in% c("FP16", "FP32", "FP64")

# ---------------------------------------------------------------- the object
.st <- function(x) attr(x, "st", exact = TRUE)

.next_name <- function() {
  .gs$seq <- .gs$seq + 1L
  list(name = sprintf("t%d", .gs$seq), seq = .gs$seq)
}

.new_tensor <- function(value = NULL, shape = NULL, dtype = NULL, requires_grad = FALSE, node = NULL,
                        undefined = FALSE) {
  st <- new.env(parent = emptyenv())
  id <- .next_name()
  st$name <- id$name
  st$seq <- id$seq
  st$value <- value          # flat, row-major (NULL until known for op results)
  st$shape <- shape          # integer vector; integer(0) for a 0-d tensor
  st$dtype <- dtype          # wire name ("FP32", ...)
  st$requires_grad <- requires_grad
  st$node <- node            # NULL for leaves
  st$undefined <- undefined
  structure(list(), st = st, class = "gradserve_tensor")
}

.is_tensor <- function(x) inherits(x, "gradserve_tensor")

#' Is this an undefined tensor?
#'
#' `autograd_grad(allow_unused = TRUE)` gives an undefined tensor for an input the outputs do not
#' depend on, as R torch does.
#' @param x A tensor.
#' @export
is_undefined_tensor <- function(x) .is_tensor(x) && isTRUE(.st(x)$undefined)

#' @rdname is_undefined_tensor
#' @export
is_torch_tensor <- function(x) .is_tensor(x)

# Values as the server sends them (flat, row-major) rounded to the dtype, as torch stores them.
.cast <- function(v, wire) {
  switch(wire,
    FP32 = readBin(writeBin(as.double(v), raw(), size = 4, endian = "little"), "double",
                   n = length(v), size = 4, endian = "little"),
    FP64 = as.double(v),
    FP16 = as.double(v),  # rounded to half precision by the server
    INT32 = , INT64 = {
      if (any(!is.finite(v))) stop("cannot convert NA, NaN or infinity to an integer tensor", call. = FALSE)
      trunc(as.double(v))
    },
    BOOL = as.logical(v)
  )
}

# An R array or vector as (flat row-major values, shape).
.row_major <- function(data) {
  d <- dim(data)
  if (is.null(d)) return(list(values = as.vector(data), shape = length(data)))
  list(values = as.vector(aperm(data, rev(seq_along(d)))), shape = as.integer(d))
}

#' Create a tensor
#'
#' As R torch's `torch_tensor()`: R doubles become `torch_float()` (float32), integers
#' `torch_long()`, logicals `torch_bool()`; a vector is 1-D (even of length 1), a matrix or
#' array keeps its dims. Nothing is sent until a value is needed.
#'
#' @param data An R vector, matrix or array, or a tensor.
#' @param dtype A dtype such as `torch_float64()`; by default from `data`'s type.
#' @param device Ignored (computation happens on the server).
#' @param requires_grad Record operations on this tensor for `autograd_grad()`.
#' @param pin_memory Ignored.
#' @return A tensor.
#' @examples
#' \dontrun{
#' w <- torch_tensor(0.5, requires_grad = TRUE)
#' }
#' @export
torch_tensor <- function(data, dtype = NULL, device = NULL, requires_grad = FALSE, pin_memory = FALSE) {
  if (.is_tensor(data)) {
    data <- as_array(data)
  }
  wire <- .wire_dtype(dtype)
  if (is.null(wire)) {
    wire <- if (is.logical(data)) "BOOL" else if (is.integer(data)) "INT64" else if (is.numeric(data)) "FP32" else
      stop("torch_tensor() takes numeric, integer or logical data", call. = FALSE)
  }
  if (requires_grad && !.is_float(wire)) {
    stop("Only Tensors of floating point dtype can require gradients", call. = FALSE)
  }
  rm <- .row_major(data)
  .new_tensor(.cast(rm$values, wire), as.integer(rm$shape), wire, isTRUE(requires_grad))
}

# ---------------------------------------------------------------- wire encoding of leaves
.b64 <- function(bytes) gsub("[\r\n]", "", jsonlite::base64_enc(bytes))

.encode_leaf <- function(x, canon) {
  st <- .st(x)
  t <- list(name = canon[[st$name]], datatype = st$dtype, shape = I(as.integer(st$shape)))
  v <- st$value
  t <- c(t, switch(st$dtype,
    FP32 = list(b64 = .b64(writeBin(as.double(v), raw(), size = 4, endian = "little"))),
    FP64 = list(b64 = .b64(writeBin(as.double(v), raw(), size = 8, endian = "little"))),
    INT32 = list(b64 = .b64(writeBin(as.integer(v), raw(), size = 4, endian = "little"))),
    BOOL = list(data = I(as.logical(v))),
    list(data = .json_numbers(v))
  ))
  if (isTRUE(st$requires_grad)) t$requires_grad <- TRUE
  t
}

# ---------------------------------------------------------------- wire decoding of results
.half <- function(bits) {
  sign <- ifelse(bitwAnd(bits, 0x8000L) != 0L, -1, 1)
  e <- bitwAnd(bitwShiftR(bits, 10L), 0x1FL)
  m <- bitwAnd(bits, 0x3FFL)
  ifelse(e == 0L, sign * m * 2^-24,
         ifelse(e == 31L, ifelse(m == 0L, sign * Inf, NaN), sign * (1 + m / 1024) * 2^(e - 15)))
}

.special <- c("NaN" = NaN, "Infinity" = Inf, "-Infinity" = -Inf)

.decode <- function(obj) {
  shape <- as.integer(unlist(obj$shape))
  n <- prod(shape)
  wire <- obj$datatype
  if (!is.null(obj$b64)) {
    raw <- jsonlite::base64_dec(obj$b64)
    v <- switch(wire,
      FP32 = readBin(raw, "double", n = n, size = 4, endian = "little"),
      FP64 = readBin(raw, "double", n = n, size = 8, endian = "little"),
      FP16 = .half(readBin(raw, "integer", n = n, size = 2, signed = FALSE, endian = "little")),
      INT32 = as.double(readBin(raw, "integer", n = n, size = 4, endian = "little")),
      INT64 = {
        w <- readBin(raw, "integer", n = 2 * n, size = 4, endian = "little")
        lo <- w[c(TRUE, FALSE)]
        hi <- w[c(FALSE, TRUE)]
        hi * 2^32 + ifelse(lo < 0, lo + 2^32, lo)
      },
      BOOL = readBin(raw, "integer", n = n, size = 1, signed = FALSE) != 0L
    )
  } else {
    v <- vapply(obj$data, function(e) if (is.character(e)) .special[[e]] else as.double(e), numeric(1))
    if (wire == "BOOL") v <- v != 0
  }
  list(values = v, shape = shape, dtype = wire)
}

# ---------------------------------------------------------------- values
# Fetch the values of op results not known yet: one request returning them all.
.materialize <- function(tensors) {
  missing <- Filter(function(t) !.st(t)$undefined && is.null(.st(t)$value), tensors)
  if (!length(missing)) return(invisible())
  req <- .payload(list(), returns = missing)
  .store(.post_grad(req$payload)$values, missing, req$canon)
  invisible()
}

.store <- function(values, tensors, canon) {
  for (t in tensors) {
    st <- .st(t)
    obj <- values[[canon[[st$name]]]]
    if (is.null(obj)) {  # a gradient allow_unused left out
      st$undefined <- TRUE
      next
    }
    d <- .decode(obj)
    st$value <- d$values
    st$shape <- d$shape
    st$dtype <- d$dtype
  }
}

.value <- function(x) {
  if (is_undefined_tensor(x)) stop("the tensor is undefined (an unused gradient)", call. = FALSE)
  .materialize(list(x))
  .st(x)
}

#' Convert a tensor to an R array
#'
#' Dims as `dim(x)`, in R's column-major order: `as_array(torch_tensor(m))` is `m`. A 0-d or 1-D
#' tensor gives a plain vector.
#' @param x A tensor.
#' @return A numeric (or logical) vector or array.
#' @export
as_array <- function(x) UseMethod("as_array")

#' @export
as_array.gradserve_tensor <- function(x) {
  st <- .value(x)
  v <- st$value
  if (st$dtype %in% c("INT32", "INT64") && all(abs(v) <= .Machine$integer.max)) v <- as.integer(v)
  if (length(st$shape) <= 1L) return(v)
  aperm(array(v, dim = rev(st$shape)), rev(seq_along(st$shape)))
}

#' @export
as.array.gradserve_tensor <- function(x, ...) {
  a <- as_array(x)
  if (is.null(dim(a))) array(a, dim = length(a)) else a
}

#' @export
as.double.gradserve_tensor <- function(x, ...) as.double(as_array(x))

#' @export
as.integer.gradserve_tensor <- function(x, ...) as.integer(as_array(x))

#' @export
as.logical.gradserve_tensor <- function(x, ...) as.logical(as_array(x))

#' @export
as.matrix.gradserve_tensor <- function(x, ...) as.matrix(as_array(x))

#' @export
dim.gradserve_tensor <- function(x) .value(x)$shape

#' @export
length.gradserve_tensor <- function(x) {
  if (is_undefined_tensor(x)) return(0L)
  as.integer(prod(.value(x)$shape))
}

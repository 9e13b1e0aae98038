# Printing as R torch prints (libtorch's layout): a common width and format per matrix chosen
# from the magnitudes of its values, fixed with 4 decimals, a "0.01 *" scale line when the
# values are all large or all small, scientific when they span many orders of magnitude.

.STRINGS <- c(FP32 = "CPUFloatType", FP64 = "CPUDoubleType", FP16 = "CPUHalfType",
              INT32 = "CPUIntType", INT64 = "CPULongType", BOOL = "CPUBoolType")

.num <- function(v, fmt) {
  out <- sprintf(fmt, v)
  out[is.nan(v)] <- "nan"
  out[is.infinite(v) & v > 0] <- "inf"
  out[is.infinite(v) & v < 0] <- "-inf"
  out
}

# (scale, width, format) for a set of values.
.print_format <- function(v) {
  v <- as.double(v)
  fin <- v[is.finite(v)]
  int_mode <- all(fin == ceiling(fin))
  exp_min <- 1
  exp_max <- 1
  if (length(fin)) {
    lo <- min(abs(fin))
    hi <- max(abs(fin[1]), fin)  # libtorch grows the maximum from the first |value| by signed values
    exp_min <- if (lo != 0) floor(log10(lo)) + 1 else 1
    exp_max <- if (hi != 0) floor(log10(hi)) + 1 else 1
  }
  if (int_mode) {
    if (exp_max > 9) return(list(scale = 1, width = 11, fmt = "%.4e"))
    return(list(scale = 1, width = exp_max + 1, fmt = "%g"))
  }
  if (exp_max - exp_min > 4) {
    width <- if (abs(exp_max) > 99 || abs(exp_min) > 99) 12 else 11
    return(list(scale = 1, width = width, fmt = "%.4e"))
  }
  if (exp_max > 5 || exp_max < 0) return(list(scale = 10^(exp_max - 1), width = 7, fmt = "%.4f"))
  list(scale = 1, width = if (exp_max == 0) 7 else exp_max + 6, fmt = "%.4f")
}

.pad <- function(s, width) formatC(s, width = width)

.scale_line <- function(scale) paste0(sprintf("%g", scale), " *")

# The lines of a matrix (row-major values, nr x nc) indented by `indent`, 80 characters a line.
.matrix_lines <- function(v, nr, nc, indent = 0) {
  f <- .print_format(v)
  cells <- .pad(.num(v / f$scale, f$fmt), f$width)
  per_line <- max(1, (80 - indent) %/% (f$width + 1))
  pad <- strrep(" ", indent)
  text <- ""
  first <- 1
  while (first <= nc) {
    last <- min(first + per_line - 1, nc)
    if (per_line < nc) {
      if (first != 1) text <- paste0(text, "\n")
      text <- paste0(text, "Columns ", first, " to ", last, pad)  # libtorch puts the first row right after
    }
    if (f$scale != 1) text <- paste0(text, .scale_line(f$scale), "\n", pad)
    for (r in seq_len(nr)) {
      row <- cells[(r - 1) * nc + (first:last)]
      text <- paste0(text, paste(row, collapse = " "), "\n")
      if (r != nr) text <- paste0(text, pad, if (f$scale != 1) " " else "")
    }
    first <- last + 1
  }
  text
}

# The body libtorch prints for a tensor (before the type line), as one string.
.body <- function(v, shape) {
  v <- as.double(v)
  nd <- length(shape)
  if (nd == 0L) return(paste0(.num(v, "%g"), "\n"))
  if (!length(v)) return("")
  if (nd == 1L) {
    f <- .print_format(v)
    head <- if (f$scale != 1) paste0(.scale_line(f$scale), "\n") else ""
    return(paste0(head, paste0(.pad(.num(v / f$scale, f$fmt), f$width), "\n", collapse = "")))
  }
  nr <- shape[nd - 1L]
  nc <- shape[nd]
  if (nd == 2L) return(.matrix_lines(v, nr, nc))
  # (i,j,.,.) = blocks, the first index varying fastest, each matrix formatted on its own
  lead <- shape[seq_len(nd - 2L)]
  strides <- rev(cumprod(rev(c(lead[-1L], 1))))
  blocks <- character(0)
  for (k in seq_len(prod(lead)) - 1L) {
    idx <- integer(length(lead))
    rem <- k
    for (i in seq_along(lead)) {  # counter with dim 1 fastest
      idx[i] <- rem %% lead[i]
      rem <- rem %/% lead[i]
    }
    off <- sum(idx * strides) * nr * nc
    blocks <- c(blocks, paste0("(", paste0(idx + 1L, ",", collapse = ""), ".,.) = \n", " ",
                               .matrix_lines(v[off + seq_len(nr * nc)], nr, nc, indent = 1)))
  }
  paste(blocks, collapse = "\n")
}

.type_line <- function(dtype, shape) {
  sprintf("[ %s{%s} ]", .STRINGS[[dtype]], paste(shape, collapse = ","))
}

.grad_fn_name <- function(op) {
  base <- sub(".*\\.", "", op)
  parts <- strsplit(base, "_", fixed = TRUE)[[1]]
  paste0(paste0(toupper(substring(parts, 1, 1)), substring(parts, 2), collapse = ""), "Backward0")
}

#' Print a tensor as R torch does
#'
#' @param x A tensor (its value is fetched from the server if not known yet).
#' @param n Print at most `n` lines of values (`-1` for all).
#' @param ... Unused.
#' @export
print.gradserve_tensor <- function(x, n = 30, ...) {
  cat("torch_tensor\n")
  if (is_undefined_tensor(x)) {
    cat("[ Tensor (undefined) ]\n")
    return(invisible(x))
  }
  st <- .value(x)
  lines <- strsplit(.body(st$value, st$shape), "\n", fixed = TRUE)[[1]]
  if (n >= 0 && length(lines) > n) {
    lines <- c(lines[seq_len(n)], "... [the output was truncated (use n=-1 to disable)]")
  }
  if (length(lines)) cat(paste0(lines, "\n"), sep = "")
  cat(.type_line(st$dtype, st$shape))
  if (is.null(st$node) && isTRUE(st$requires_grad)) cat("[ requires_grad = TRUE ]")
  if (!is.null(st$node) && isTRUE(st$requires_grad)) cat("[ grad_fn = <", .grad_fn_name(st$node$op), "> ]", sep = "")
  cat("\n")
  invisible(x)
}

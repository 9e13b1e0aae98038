# torch_* and nnf_* functions with R torch's names and arguments (dims 1-based, class targets
# 1-based), recorded as the engine's ops. Creation functions make leaves from R's own numbers.

.leaf <- function(values, size, dtype, requires_grad) {
  size <- as.integer(unlist(size))
  wire <- .wire_dtype(dtype) %||% "FP32"
  if (requires_grad && !.is_float(wire)) stop("Only Tensors of floating point dtype can require gradients", call. = FALSE)
  .new_tensor(.cast(rep_len(values, prod(size)), wire), size, wire, isTRUE(requires_grad))
}

`%||%` <- function(a, b) if (is.null(a)) b else a

#' Tensor functions with R torch's names
#'
#' Each records the engine op of the same name (see the server's `GET /v1/ops`); dims are
#' 1-based. `torch_zeros()`, `torch_ones()`, `torch_full()`, `torch_randn()`, `torch_rand()` and
#' `torch_arange()` make leaves from R's numbers (R's random generator).
#'
#' @param self,other,tensors,condition,exponent,mat2 Tensors (numbers where torch takes them).
#' @param dim,dim0,dim1,start_dim,end_dim,keepdim,shape,min,max,... As in R torch.
#' @name torch_functions
NULL

.fn1 <- function(op) function(self) .record(op, list(.lift(self)))
.fn2 <- function(op) function(self, other) .record(op, list(.lift(self), .lift(other)))

#' @rdname torch_functions
#' @export
torch_exp <- .fn1("exp")
#' @rdname torch_functions
#' @export
torch_log <- .fn1("log")
#' @rdname torch_functions
#' @export
torch_log1p <- .fn1("log1p")
#' @rdname torch_functions
#' @export
torch_expm1 <- .fn1("expm1")
#' @rdname torch_functions
#' @export
torch_sqrt <- .fn1("sqrt")
#' @rdname torch_functions
#' @export
torch_rsqrt <- .fn1("rsqrt")
#' @rdname torch_functions
#' @export
torch_abs <- .fn1("abs")
#' @rdname torch_functions
#' @export
torch_neg <- .fn1("neg")
#' @rdname torch_functions
#' @export
torch_square <- .fn1("square")
#' @rdname torch_functions
#' @export
torch_sin <- .fn1("sin")
#' @rdname torch_functions
#' @export
torch_cos <- .fn1("cos")
#' @rdname torch_functions
#' @export
torch_tan <- .fn1("tan")
#' @rdname torch_functions
#' @export
torch_tanh <- .fn1("tanh")
#' @rdname torch_functions
#' @export
torch_sigmoid <- .fn1("sigmoid")
#' @rdname torch_functions
#' @export
torch_relu <- .fn1("relu")
#' @rdname torch_functions
#' @export
torch_t <- .fn1("t")
#' @rdname torch_functions
#' @export
torch_add <- .fn2("add")
#' @rdname torch_functions
#' @export
torch_sub <- .fn2("sub")
#' @rdname torch_functions
#' @export
torch_mul <- .fn2("mul")
#' @rdname torch_functions
#' @export
torch_div <- .fn2("div")
#' @rdname torch_functions
#' @export
torch_matmul <- .fn2("matmul")
#' @rdname torch_functions
#' @export
torch_mm <- function(self, mat2) .record("mm", list(self, mat2))
#' @rdname torch_functions
#' @export
torch_mv <- .fn2("mv")
#' @rdname torch_functions
#' @export
torch_dot <- .fn2("dot")
#' @rdname torch_functions
#' @export
torch_outer <- .fn2("outer")
#' @rdname torch_functions
#' @export
torch_maximum <- .fn2("maximum")
#' @rdname torch_functions
#' @export
torch_minimum <- .fn2("minimum")
#' @rdname torch_functions
#' @export
torch_pow <- function(self, exponent) .record("pow", list(.lift(self), .lift(exponent)))
#' @rdname torch_functions
#' @export
torch_sum <- function(self, dim = NULL, keepdim = FALSE) .METHODS$sum(self, dim, keepdim)
#' @rdname torch_functions
#' @export
torch_mean <- function(self, dim = NULL, keepdim = FALSE) .METHODS$mean(self, dim, keepdim)
#' @rdname torch_functions
#' @export
torch_prod <- function(self, dim = NULL, keepdim = FALSE) .METHODS$prod(self, dim, keepdim)
#' @rdname torch_functions
#' @export
torch_max <- function(self, dim = NULL, keepdim = FALSE, other = NULL) .METHODS$max(self, dim, keepdim, other)
#' @rdname torch_functions
#' @export
torch_min <- function(self, dim = NULL, keepdim = FALSE, other = NULL) .METHODS$min(self, dim, keepdim, other)
#' @rdname torch_functions
#' @export
torch_logsumexp <- function(self, dim, keepdim = FALSE) .METHODS$logsumexp(self, dim, keepdim)
#' @rdname torch_functions
#' @export
torch_clamp <- function(self, min = NULL, max = NULL) .METHODS$clamp(self, min, max)
#' @rdname torch_functions
#' @export
torch_reshape <- function(self, shape) .METHODS$reshape(self, shape)
#' @rdname torch_functions
#' @export
torch_transpose <- function(self, dim0, dim1) .METHODS$transpose(self, dim0, dim1)
#' @rdname torch_functions
#' @export
torch_flatten <- function(self, start_dim = 1L, end_dim = -1L) .METHODS$flatten(self, start_dim, end_dim)
#' @rdname torch_functions
#' @export
torch_squeeze <- function(self, dim = NULL) .METHODS$squeeze(self, dim)
#' @rdname torch_functions
#' @export
torch_unsqueeze <- function(self, dim) .METHODS$unsqueeze(self, dim)
#' @rdname torch_functions
#' @export
torch_softmax <- function(self, dim) .METHODS$softmax(self, dim)
#' @rdname torch_functions
#' @export
torch_log_softmax <- function(self, dim) .METHODS$log_softmax(self, dim)
#' @rdname torch_functions
#' @export
torch_cumsum <- function(self, dim) .METHODS$cumsum(self, dim)
#' @rdname torch_functions
#' @export
torch_cat <- function(tensors, dim = 1L) .record("cat", list(tensors), list(dim = .dim0(dim)))
#' @rdname torch_functions
#' @export
torch_stack <- function(tensors, dim = 1L) .record("stack", list(tensors), list(dim = .dim0(dim)))
#' @rdname torch_functions
#' @export
torch_where <- function(condition, self, other) .record("where", list(.lift(condition), .lift(self), .lift(other)))

#' @rdname torch_functions
#' @param size,dtype,requires_grad,fill_value,start,end,step,device As in R torch.
#' @export
torch_zeros <- function(..., dtype = NULL, device = NULL, requires_grad = FALSE) .leaf(0, list(...), dtype, requires_grad)
#' @rdname torch_functions
#' @export
torch_ones <- function(..., dtype = NULL, device = NULL, requires_grad = FALSE) .leaf(1, list(...), dtype, requires_grad)
#' @rdname torch_functions
#' @export
torch_full <- function(size, fill_value, dtype = NULL, device = NULL, requires_grad = FALSE) {
  .leaf(fill_value, list(size), dtype, requires_grad)
}
#' @rdname torch_functions
#' @export
torch_randn <- function(..., dtype = NULL, device = NULL, requires_grad = FALSE) {
  .leaf(stats::rnorm(prod(unlist(list(...)))), list(...), dtype, requires_grad)
}
#' @rdname torch_functions
#' @export
torch_rand <- function(..., dtype = NULL, device = NULL, requires_grad = FALSE) {
  .leaf(stats::runif(prod(unlist(list(...)))), list(...), dtype, requires_grad)
}
#' @rdname torch_functions
#' @param seed The seed of R's generator, which torch_randn() and torch_rand() use.
#' @export
torch_manual_seed <- function(seed) invisible(set.seed(seed))
#' @rdname torch_functions
#' @export
torch_arange <- function(start, end, step = 1, dtype = NULL, device = NULL, requires_grad = FALSE) {
  v <- seq(start, end, by = step)  # R torch's arange includes `end`
  .leaf(v, length(v), dtype %||% (if (all(c(start, end, step) == trunc(c(start, end, step)))) torch_long()),
        requires_grad)
}

# ---------------------------------------------------------------- nnf_*
#' Neural-network functions with R torch's names
#'
#' Recorded as the engine's `nn.functional.*` ops. Class targets (`nnf_cross_entropy()`,
#' `nnf_nll_loss()`) are 1-based, as in R torch.
#' @param input,target,weight,bias,dim,reduction,negative_slope,beta,threshold As in R torch.
#' @name nnf_functions
NULL

.nnf1 <- function(op) function(input) .record(paste0("nn.functional.", op), list(input))

#' @rdname nnf_functions
#' @export
nnf_relu <- .nnf1("relu")
#' @rdname nnf_functions
#' @export
nnf_sigmoid <- .nnf1("sigmoid")
#' @rdname nnf_functions
#' @export
nnf_tanh <- .nnf1("tanh")
#' @rdname nnf_functions
#' @export
nnf_gelu <- .nnf1("gelu")
#' @rdname nnf_functions
#' @export
nnf_silu <- .nnf1("silu")
#' @rdname nnf_functions
#' @export
nnf_elu <- .nnf1("elu")
#' @rdname nnf_functions
#' @export
nnf_logsigmoid <- .nnf1("logsigmoid")
#' @rdname nnf_functions
#' @export
nnf_softplus <- function(input, beta = 1, threshold = 20) {
  .record("nn.functional.softplus", list(input), list(beta = beta, threshold = threshold))
}
#' @rdname nnf_functions
#' @export
nnf_leaky_relu <- function(input, negative_slope = 0.01) {
  .record("nn.functional.leaky_relu", list(input), list(negative_slope = negative_slope))
}
#' @rdname nnf_functions
#' @export
nnf_softmax <- function(input, dim) .record("nn.functional.softmax", list(input), list(dim = .dim0(dim)))
#' @rdname nnf_functions
#' @export
nnf_log_softmax <- function(input, dim) .record("nn.functional.log_softmax", list(input), list(dim = .dim0(dim)))
#' @rdname nnf_functions
#' @export
nnf_linear <- function(input, weight, bias = NULL) .record("nn.functional.linear", list(input, weight, bias))
#' @rdname nnf_functions
#' @export
nnf_mse_loss <- function(input, target, reduction = "mean") {
  .record("nn.functional.mse_loss", list(input, .lift(target)), list(reduction = reduction))
}
#' @rdname nnf_functions
#' @export
nnf_l1_loss <- function(input, target, reduction = "mean") {
  .record("nn.functional.l1_loss", list(input, .lift(target)), list(reduction = reduction))
}
#' @rdname nnf_functions
#' @export
nnf_binary_cross_entropy <- function(input, target, weight = NULL, reduction = "mean") {
  .record("nn.functional.binary_cross_entropy", list(input, .lift(target)), list(weight = weight, reduction = reduction))
}
#' @rdname nnf_functions
#' @export
nnf_binary_cross_entropy_with_logits <- function(input, target, weight = NULL, reduction = "mean") {
  .record("nn.functional.binary_cross_entropy_with_logits", list(input, .lift(target)),
          list(weight = weight, reduction = reduction))
}
.class_target <- function(target) if (.is_tensor(target)) target - 1L else torch_tensor(as.integer(target) - 1L)
#' @rdname nnf_functions
#' @export
nnf_cross_entropy <- function(input, target, weight = NULL, reduction = "mean") {
  .record("nn.functional.cross_entropy", list(input, .class_target(target)), list(weight = weight, reduction = reduction))
}
#' @rdname nnf_functions
#' @export
nnf_nll_loss <- function(input, target, weight = NULL, reduction = "mean") {
  .record("nn.functional.nll_loss", list(input, .class_target(target)), list(weight = weight, reduction = reduction))
}

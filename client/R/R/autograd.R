.as_list <- function(x) if (.is_tensor(x)) list(x) else as.list(x)

.check_tensors <- function(xs, what) {
  for (t in xs) {
    if (!.is_tensor(t)) stop(sprintf("%s must be tensors", what), call. = FALSE)
    if (is_undefined_tensor(t)) stop(sprintf("%s holds an undefined tensor", what), call. = FALSE)
  }
  xs
}

.marks <- function(xs) lapply(xs, .mark)

#' Computes and returns the sum of gradients of outputs with respect to the inputs
#'
#' R torch's `autograd_grad()`, answered by the server in one request. With
#' `create_graph = TRUE` the gradients are tensors that can be differentiated again.
#'
#' @param outputs A tensor or list of tensors to differentiate.
#' @param inputs A tensor or list of tensors to differentiate with respect to.
#' @param grad_outputs `NULL`, a tensor, or a list (of tensors or `NULL`) of the same length as
#'   `outputs`: the vector in the vector-Jacobian product.
#' @param retain_graph Kept for R torch's signature (each request builds its own graph).
#' @param create_graph Make the gradients differentiable.
#' @param allow_unused Give an undefined tensor for an input the outputs do not use, instead of an
#'   error.
#' @return A list of tensors, one per input.
#' @examples
#' \dontrun{
#' gradserve_connect("http://127.0.0.1:8000")
#' w <- torch_tensor(0.5, requires_grad = TRUE)
#' b <- torch_tensor(0.9, requires_grad = TRUE)
#' x <- torch_tensor(runif(100))
#' y <- 2 * x + 1
#' loss <- (y - (w * x + b))^2
#' loss <- loss$mean()
#' o <- autograd_grad(loss, list(w, b))
#' o
#' }
#' @export
autograd_grad <- function(outputs, inputs, grad_outputs = NULL, retain_graph = create_graph,
                          create_graph = FALSE, allow_unused = FALSE) {
  outputs <- .check_tensors(.as_list(outputs), "outputs")
  inputs <- .check_tensors(.as_list(inputs), "inputs")
  if (!length(inputs)) stop("`inputs` argument to `grad()` cannot be empty.", call. = FALSE)
  call <- list(outputs = .marks(outputs), inputs = .marks(inputs))
  gos <- list()
  if (!is.null(grad_outputs)) {
    gos <- lapply(.as_list(grad_outputs), function(g) if (is.null(g) || .is_tensor(g)) g else torch_tensor(g))
    call$grad_outputs <- lapply(gos, function(g) if (is.null(g)) NULL else .mark(g))
  }
  call$retain_graph <- isTRUE(retain_graph)
  call$create_graph <- isTRUE(create_graph)
  call$allow_unused <- isTRUE(allow_unused)
  gos <- Filter(Negate(is.null), gos)
  if (isTRUE(create_graph)) return(.grad_node(call, outputs, inputs, gos))
  grads <- .post_grad(.payload(c(outputs, inputs, gos), call)$payload)$grads
  lapply(grads, function(g) {
    if (is.null(g)) return(.new_tensor(undefined = TRUE))
    d <- .decode(g)
    .new_tensor(d$values, d$shape, d$dtype)
  })
}

# create_graph = TRUE: a grad node inside the graph; its results are recorded tensors whose
# values are fetched at once (so errors show here, as in R torch) and kept.
.grad_node <- function(call, outputs, inputs, gos) {
  node <- .new_node("grad", list(), call, c(outputs, inputs, gos))
  grads <- lapply(inputs, function(i) .new_tensor(requires_grad = TRUE, node = node))
  node$outputs <- vapply(grads, function(t) .st(t)$name, "")
  node$seq <- .st(grads[[1]])$seq
  .materialize(grads)
  grads
}

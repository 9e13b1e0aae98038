# Recording: an op on tensors makes a wire-format v1 node ({"op", "inputs", "attributes",
# "outputs"}) and result tensors that remember it. Nothing is computed here.

# A node: its wire form, the tensors it reads (to walk the graph) and its order of creation.
.new_node <- function(op, inputs, attributes, parents) {
  node <- new.env(parent = emptyenv())
  node$op <- op
  node$inputs <- inputs
  node$attributes <- attributes
  node$parents <- parents
  node$outputs <- character(0)
  node
}

# A tensor inside a node or call: its name (or {"ref": name} in op attributes, where strings are
# literals) is only written when a request is built, by position (see .payload).
.mark <- function(t, as_ref = FALSE) structure(list(st = .st(t), as_ref = as_ref), class = "gradserve_mark")

.resolve <- function(x, canon) {
  if (inherits(x, "gradserve_mark")) {
    name <- canon[[x$st$name]]
    return(if (x$as_ref) list(ref = name) else name)
  }
  if (!is.list(x)) return(x)
  out <- lapply(x, .resolve, canon = canon)
  attributes(out) <- attributes(x)
  out
}

# An argument as JSON: a tensor is a mark (above); lists stay lists; a length-1 vector is a
# scalar unless wrapped in I(); non-integer doubles keep all their digits.
.encoder <- function() {
  parents <- list()
  enc <- function(v, in_inputs) {
    if (.is_tensor(v)) {
      if (is_undefined_tensor(v)) stop("an undefined tensor cannot be used in an operation", call. = FALSE)
      parents[[length(parents) + 1L]] <<- v
      return(.mark(v, as_ref = !in_inputs))
    }
    if (is.null(v) || inherits(v, "json")) return(v)
    if (inherits(v, "gradserve_dtype")) return(v$wire)
    if (is.list(v)) return(lapply(unclass(v), enc, in_inputs = in_inputs))
    if (is.numeric(v) && any(!is.finite(v))) {  # JSON has no NaN: such literals go as tensors
      return(enc(torch_tensor(as.double(v), dtype = torch_float64()), in_inputs))
    }
    num <- function(e) if (is.double(e) && e != trunc(e)) .json_number(e) else e
    if (is.numeric(v) && length(v) == 1L && !inherits(v, "AsIs")) return(num(v))
    if (is.numeric(v)) return(I(lapply(as.vector(v), num)))
    if (length(v) == 1L && !inherits(v, "AsIs")) return(as.vector(v))
    I(as.vector(v))
  }
  list(enc = enc, parents = function() parents)
}

# Record op `op` on positional `args` and keyword `attrs`; the result tensor, or a list of
# `n_outputs` tensors.
.record <- function(op, args = list(), attrs = list(), n_outputs = 1L, differentiable = TRUE) {
  e <- .encoder()
  inputs <- lapply(args, e$enc, in_inputs = TRUE)
  attributes <- lapply(Filter(Negate(is.null), attrs), e$enc, in_inputs = FALSE)
  parents <- e$parents()
  node <- .new_node(op, inputs, attributes, parents)
  rg <- differentiable && any(vapply(parents, function(p) isTRUE(.st(p)$requires_grad), logical(1)))
  outs <- lapply(seq_len(n_outputs), function(i) .new_tensor(requires_grad = rg, node = node))
  node$outputs <- vapply(outs, function(t) .st(t)$name, "")
  node$seq <- .st(outs[[1]])$seq
  if (n_outputs == 1L) outs[[1]] else outs
}

.wire_node <- function(node, canon) {
  n <- list(op = node$op)
  if (node$op != "grad") n$inputs <- .resolve(node$inputs, canon)
  if (length(node$attributes)) n$attributes <- .resolve(node$attributes, canon)
  n$outputs <- I(vapply(node$outputs, function(o) canon[[o]], ""))
  n
}

# The leaves and nodes a set of tensors depends on, nodes in the order they were recorded.
.collect <- function(roots) {
  leaves <- list()
  nodes <- list()
  seen <- new.env(parent = emptyenv())
  stack <- roots
  while (length(stack)) {
    t <- stack[[length(stack)]]
    stack[[length(stack)]] <- NULL
    st <- .st(t)
    if (!is.null(seen[[st$name]])) next
    seen[[st$name]] <- TRUE
    if (is.null(st$node)) {
      leaves[[length(leaves) + 1L]] <- t
    } else {
      key <- paste0("node", st$node$seq)
      if (is.null(seen[[key]])) {
        seen[[key]] <- TRUE
        nodes[[length(nodes) + 1L]] <- st$node
        stack <- c(stack, st$node$parents)
      }
    }
  }
  leaves <- leaves[order(vapply(leaves, function(t) .st(t)$seq, 0L))]
  nodes <- nodes[order(vapply(nodes, function(n) n$seq, 0L))]
  list(leaves = leaves, nodes = nodes)
}

# The v1 request for the graph reaching `roots` (tensors as b64, answers as b64), with the
# top-level `call` and the tensors to `return`. Tensors are named by position (t0, t1, ...), so
# the same computation is the same graph, byte for byte, and the server's plan cache knows it.
# Returns the payload and the names used (a tensor's internal name -> its name on the wire).
.payload <- function(roots, call = NULL, returns = list()) {
  g <- .collect(c(roots, returns))
  canon <- new.env(parent = emptyenv())
  k <- 0L
  for (name in c(vapply(g$leaves, function(t) .st(t)$name, ""), unlist(lapply(g$nodes, function(n) n$outputs)))) {
    canon[[name]] <- sprintf("t%d", k)
    k <- k + 1L
  }
  payload <- list(graph = list(inputs = lapply(g$leaves, .encode_leaf, canon = canon),
                               nodes = lapply(g$nodes, .wire_node, canon = canon)),
                  response_encoding = "b64")
  if (!is.null(call)) payload <- c(payload, .resolve(call, canon))
  if (length(returns)) payload[["return"]] <- I(vapply(returns, function(t) canon[[.st(t)$name]], ""))
  nonfinite <- vapply(g$leaves, function(t) {
    v <- .st(t)$value
    is.double(v) && any(!is.finite(v))
  }, logical(1))
  # torch computes with NaN and infinity: values given on purpose are sent so (the server
  # refuses them otherwise, as likely mistakes in hand-written requests)
  if (any(nonfinite)) payload$allow_non_finite <- TRUE
  list(payload = payload, canon = canon)
}

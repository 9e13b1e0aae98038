# Against a live server (GRADSERVE_URL). Expected values are closed forms computed here in R.

test_that("R torch's autograd_grad example runs unchanged and matches the closed form", {
  skip_without_server()
  w <- torch_tensor(0.5, requires_grad = TRUE)
  b <- torch_tensor(0.9, requires_grad = TRUE)
  x <- torch_tensor(runif(100))
  y <- 2 * x + 1
  loss <- (y - (w * x + b))^2
  loss <- loss$mean()
  o <- autograd_grad(loss, list(w, b))
  out <- capture.output(o)

  want <- seed_closed_form(as_array(x), f32(0.5), f32(0.9))
  expect_length(o, 2L)
  expect_equal(as_array(o[[1]]), want$w, tolerance = 1e-5)
  expect_equal(as_array(o[[2]]), want$b, tolerance = 1e-5)
  expect_equal(loss$item(), want$loss, tolerance = 1e-5)
  expect_equal(dim(o[[1]]), 1L)
  expect_equal(out[1:4], c("[[1]]", "torch_tensor", sprintf("%7.4f", as_array(o[[1]])), "[ CPUFloatType{1} ]"))
  expect_false(o[[1]]$requires_grad)
})

test_that("second order: create_graph = TRUE gives differentiable gradients", {
  skip_without_server()
  xv <- c(1, 2, 3)
  x <- torch_tensor(xv, dtype = torch_float64(), requires_grad = TRUE)
  g <- autograd_grad((x^3)$sum(), x, create_graph = TRUE)[[1]]
  expect_equal(as_array(g), 3 * xv^2)
  expect_true(g$requires_grad)
  v <- c(1, 0, 0)
  h <- autograd_grad((g * torch_tensor(v, dtype = torch_float64()))$sum(), x)[[1]]
  expect_equal(as_array(h), 6 * xv * v)
  # the whole Hessian of sum(x^3), row by row
  hess <- t(sapply(1:3, function(i) as_array(autograd_grad(g[i], x, retain_graph = TRUE)[[1]])))
  expect_equal(hess, diag(6 * xv))
})

test_that("matrices keep their dims and orientation both ways", {
  skip_without_server()
  set.seed(7)
  W <- matrix(rnorm(6), 2, 3)
  X <- matrix(rnorm(12), 3, 4)
  Wt <- torch_tensor(W, dtype = torch_float64(), requires_grad = TRUE)
  Xt <- torch_tensor(X, dtype = torch_float64())
  P <- Wt %*% Xt
  expect_equal(dim(P), c(2L, 4L))
  expect_equal(as_array(P), W %*% X)
  expect_equal(as_array(t(P)), t(W %*% X))
  expect_equal(as_array(P[1, ]), (W %*% X)[1, ])
  expect_equal(as_array(P[, 2:3]), (W %*% X)[, 2:3])
  expect_equal(as_array(P$sum(dim = 1)), colSums(W %*% X))
  expect_equal(as_array(P$mean(dim = 2)), rowMeans(W %*% X))
  gW <- autograd_grad((P^2)$sum(), Wt)[[1]]
  expect_equal(dim(gW), c(2L, 3L))
  expect_equal(as_array(gW), 2 * (W %*% X) %*% t(X))
  A <- array(as.double(1:24), c(2, 3, 4))
  expect_equal(as_array(torch_tensor(A) * 1), A)
  expect_equal(as_array(torch_tensor(A)$permute(c(3, 1, 2))), aperm(A, c(3, 1, 2)))
})

test_that("functions and methods with R torch's names", {
  skip_without_server()
  xv <- c(-1, 0.5, 2)
  x <- torch_tensor(xv, dtype = torch_float64(), requires_grad = TRUE)
  sig <- function(v) 1 / (1 + exp(-v))
  expect_equal(as_array(torch_sigmoid(x)), sig(xv))
  expect_equal(as_array(nnf_relu(x)), pmax(xv, 0))
  expect_equal(as_array(x$tanh()), tanh(xv))
  expect_equal(as_array(exp(x)), exp(xv))
  expect_equal(as_array(nnf_softmax(x, dim = 1)), exp(xv) / sum(exp(xv)))
  expect_equal(as_array(torch_cat(list(x, x), dim = 1)), c(xv, xv))
  mx <- torch_tensor(matrix(c(3, 1, 2, 5), 2), dtype = torch_float64())$max(dim = 2)
  expect_equal(as_array(mx[[1]]), c(3, 5))
  expect_equal(as_array(mx[[2]]), c(1L, 2L))  # 1-based, as R torch
  g <- autograd_grad(nnf_mse_loss(x, torch_tensor(c(0, 0, 0), dtype = torch_float64())), x)[[1]]
  expect_equal(as_array(g), 2 * xv / 3)
  go <- autograd_grad(x * x, x, grad_outputs = torch_tensor(c(1, 10, 100), dtype = torch_float64()))[[1]]
  expect_equal(as_array(go), 2 * xv * c(1, 10, 100))
})

test_that("allow_unused: torch's error as an R condition, or an undefined tensor", {
  skip_without_server()
  x <- torch_tensor(1, requires_grad = TRUE)
  z <- torch_tensor(2, requires_grad = TRUE)
  err <- tryCatch(autograd_grad((x * 3)$sum(), list(x, z)), error = identity)
  expect_s3_class(err, "gradserve_error")
  expect_match(conditionMessage(err), "appears to not have been used in the graph. Set allow_unused=True",
               fixed = TRUE)
  expect_equal(err$status, 422L)
  o <- autograd_grad((x * 3)$sum(), list(x, z), allow_unused = TRUE)
  expect_equal(as_array(o[[1]]), 3)
  expect_true(is_undefined_tensor(o[[2]]))
  expect_equal(capture.output(print(o[[2]])), c("torch_tensor", "[ Tensor (undefined) ]"))
  o2 <- autograd_grad((x * 3)$sum(), list(x, z), allow_unused = TRUE, create_graph = TRUE)
  expect_true(is_undefined_tensor(o2[[2]]))
})

test_that("shape errors carry the server's (torch's) message", {
  skip_without_server()
  m <- torch_tensor(matrix(as.double(1:6), 2, 3))
  expect_error(as_array(m %*% m), "mat1 and mat2 shapes cannot be multiplied \\(2x3 and 2x3\\)",
               class = "gradserve_error")
  x <- torch_tensor(c(1, 2), requires_grad = TRUE)
  expect_error(autograd_grad(x * 2, x), "grad can be implicitly created only for scalar outputs",
               class = "gradserve_error")
  expect_error(as_array(x$reshape(c(3))), "shape '\\[3\\]' is invalid for input of size 2",
               class = "gradserve_error")
})

test_that("the API key comes from GRADSERVE_API_KEY or an argument", {
  url <- Sys.getenv("GRADSERVE_URL", "")
  key <- Sys.getenv("GRADSERVE_API_KEY", "")
  skip_if(url == "" || key == "", "needs a server with GRADSERVE_API_KEYS and GRADSERVE_API_KEY")
  on.exit(gradserve_connect(url))
  gradserve_connect(url, api_key = "not-the-key")
  err <- tryCatch(as_array(torch_tensor(1) * 2), error = identity)
  expect_s3_class(err, "gradserve_error")
  expect_equal(err$status, 401L)
  gradserve_connect(url, api_key = key)
  expect_equal(as_array(torch_tensor(1) * 2), 2)
})

# The README's seed request, as an R user writes it with jsonlite and posts it with httr2.
raw_seed <- function(auto_unbox) {
  req <- list(
    graph = list(
      inputs = list(
        list(name = "w", datatype = "FP32", shape = integer(0), data = 0.5, requires_grad = TRUE),
        list(name = "b", datatype = "FP32", shape = integer(0), data = 0.9, requires_grad = TRUE),
        list(name = "x", datatype = "FP32", shape = 4, data = c(0.1, 0.4, 0.7, 0.9))
      ),
      source = "y = 2 * x + 1\nloss = mean((y - (w * x + b)) ** 2)"
    ),
    outputs = "loss", inputs = c("w", "b"), `return` = "loss"
  )
  body <- jsonlite::toJSON(req, auto_unbox = auto_unbox)
  r <- httr2::request(paste0(Sys.getenv("GRADSERVE_URL"), "/v1/grad"))
  key <- Sys.getenv("GRADSERVE_API_KEY", "")
  if (nzchar(key)) r <- httr2::req_headers(r, Authorization = paste("Bearer", key))
  r <- httr2::req_error(httr2::req_body_raw(r, body, type = "application/json"), is_error = function(resp) FALSE)
  resp <- httr2::req_perform(r)
  list(status = httr2::resp_status(resp), body = jsonlite::fromJSON(httr2::resp_body_string(resp)))
}

test_that("raw REST: both jsonlite settings get 200 and the closed form", {
  skip_if(Sys.getenv("GRADSERVE_URL") == "", "set GRADSERVE_URL")
  want <- seed_closed_form(f32(c(0.1, 0.4, 0.7, 0.9)), f32(0.5), f32(0.9))
  for (auto_unbox in c(FALSE, TRUE)) {
    res <- raw_seed(auto_unbox)
    expect_equal(res$status, 200L, info = paste("auto_unbox =", auto_unbox))
    grads <- res$body$grads
    expect_equal(grads$name, c("w", "b"))
    expect_equal(unlist(grads$data), c(want$w, want$b), tolerance = 1e-6)
    expect_equal(res$body$values$loss$data, want$loss, tolerance = 1e-6)
  }
})

test_that("R idioms: indexing, integer and half tensors, non-finite values", {
  skip_without_server()
  M <- matrix(as.double(1:12), 3, 4)
  P <- torch_tensor(M, dtype = torch_float64())
  expect_equal(dim(P[1, , drop = FALSE]), c(1L, 4L))
  expect_equal(as_array(P[-1, ]), M[3, ])  # negative indices count from the end, as in R torch
  expect_equal(as_array(P[c(1, 3), 2]), M[c(1, 3), 2])
  expect_equal(as.numeric(P$sum()), sum(M))
  expect_equal(P$sum()$item(), sum(M))
  expect_identical(as_array(torch_tensor(c(2L, 5L)) * 3L), c(6L, 15L))
  expect_equal(as_array(torch_tensor(c(1, NA, Inf, -Inf), dtype = torch_float16()) * 2), c(2, NaN, Inf, -Inf))
  x <- torch_tensor(c(1, NaN, Inf), requires_grad = TRUE)
  expect_equal(as_array(autograd_grad((x * 2)$sum(), x)[[1]]), c(2, 2, 2))
  expect_error(P$backward(), "use autograd_grad")
})

test_that("a training loop sends the same graph every step: the server's plan cache hits", {
  skip_without_server()
  hits <- function() {
    resp <- httr2::req_perform(httr2::request(paste0(Sys.getenv("GRADSERVE_URL"), "/metrics")))
    text <- httr2::resp_body_string(resp)
    as.numeric(sub(".* ", "", grep("^gradserve_plan_cache_hits_total ", strsplit(text, "\n")[[1]], value = TRUE)))
  }
  set.seed(3)
  xv <- runif(50)
  yv <- 3 * xv - 1
  w <- 0
  b <- 0
  before <- hits()
  for (step in 1:5) {
    wt <- torch_tensor(w, requires_grad = TRUE)
    bt <- torch_tensor(b, requires_grad = TRUE)
    loss <- ((torch_tensor(yv) - (wt * torch_tensor(xv) + bt))^2)$mean()
    g <- autograd_grad(loss, list(wt, bt))
    w <- w - 0.5 * as_array(g[[1]])
    b <- b - 0.5 * as_array(g[[2]])
  }
  expect_gte(hits() - before, 4)
  r <- yv - (w * xv + b)
  expect_lt(mean(r^2), mean(yv^2))
})

test_that("R doubles in arithmetic are float scalars, as in R torch", {
  skip_without_server()
  l <- torch_tensor(1:3)
  expect_equal((l * 2)$dtype$name, "Float")
  expect_equal((l * 2L)$dtype$name, "Long")
  expect_equal(as_array(l * 2), c(2, 4, 6))
  expect_equal((torch_tensor(c(1, 2)) * 2)$dtype$name, "Float")
})

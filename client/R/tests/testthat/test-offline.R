# No server needed: leaves hold their values, so printing and converting them is local.

test_that("torch_tensor takes R torch's dtypes and shapes", {
  expect_equal(dim(torch_tensor(0.5)), 1L)
  expect_equal(dim(torch_tensor(matrix(1:6, 2, 3))), c(2L, 3L))
  expect_equal(torch_tensor(0.5)$dtype$name, "Float")
  expect_equal(torch_tensor(1:3)$dtype$name, "Long")
  expect_equal(torch_tensor(TRUE)$dtype$name, "Bool")
  expect_equal(torch_tensor(0.5, dtype = torch_float64())$dtype$name, "Double")
  expect_error(torch_tensor(1:3, requires_grad = TRUE), "floating point")
})

test_that("as_array gives R's column-major arrays back", {
  m <- matrix(c(1, 2, 3, 4, 5, 6), 2, 3)
  expect_equal(as_array(torch_tensor(m, dtype = torch_float64())), m)
  a <- array(as.double(1:24), c(2, 3, 4))
  expect_equal(as_array(torch_tensor(a)), a)
  expect_equal(as_array(torch_tensor(c(1, 2))), c(1, 2))
  expect_equal(as_array(torch_tensor(0.9)), f32(0.9))  # stored as float32, as R torch does
  expect_identical(as_array(torch_tensor(1:3)), 1:3)
})

test_that("printing follows R torch", {
  expect_equal(capture.output(print(torch_tensor(0.5))),
               c("torch_tensor", " 0.5000", "[ CPUFloatType{1} ]"))
  expect_equal(capture.output(print(torch_tensor(c(1, 2, 3)))),
               c("torch_tensor", " 1", " 2", " 3", "[ CPUFloatType{3} ]"))
  expect_equal(capture.output(print(torch_tensor(matrix(c(1, 2, 3, 4), 2)))),
               c("torch_tensor", " 1  3", " 2  4", "[ CPUFloatType{2,2} ]"))
  expect_equal(capture.output(print(torch_tensor(c(0.001, 0.002)))),
               c("torch_tensor", "0.001 *", " 1.0000", " 2.0000", "[ CPUFloatType{2} ]"))
  expect_equal(capture.output(print(torch_tensor(c(-1.5, 2.25), requires_grad = TRUE))),
               c("torch_tensor", "-1.5000", " 2.2500", "[ CPUFloatType{2} ][ requires_grad = TRUE ]"))
  expect_equal(capture.output(print(torch_tensor(1:2, dtype = torch_long()))),
               c("torch_tensor", " 1", " 2", "[ CPULongType{2} ]"))
  long <- capture.output(print(torch_tensor(as.double(1:40))))
  expect_equal(long[32], "... [the output was truncated (use n=-1 to disable)]")
  expect_equal(length(capture.output(print(torch_tensor(as.double(1:40)), n = -1))), 42L)
  three <- capture.output(print(torch_tensor(array(as.double(1:8), c(2, 2, 2)))))
  expect_equal(three[2], "(1,.,.) = ")
  expect_true("[ CPUFloatType{2,2,2} ]" %in% three)
})

test_that("recording sends nothing and needs no connection", {
  x <- torch_tensor(c(1, 2), requires_grad = TRUE)
  y <- (x * 2)$sum()
  expect_true(y$requires_grad)
  expect_false(y$is_leaf)
  expect_equal(y$grad_fn, "SumBackward0")
  p <- gradserve:::.payload(list(y))$payload
  expect_equal(vapply(p$graph$nodes, function(n) n$op, ""), c("mul", "sum"))
  expect_equal(p$graph$inputs[[1]]$datatype, "FP32")
})

test_that("the wire JSON is unambiguous: shapes and literal lists stay arrays", {
  x <- torch_tensor(c(1, 2, 3, 4))
  y <- x$reshape(c(4))
  json <- gradserve:::.to_json(gradserve:::.payload(list(y))$payload)
  expect_match(json, '"shape":[4]', fixed = TRUE)
  expect_match(json, '"inputs":["t0",[4]]', fixed = TRUE)
  z <- torch_tensor(0.5)
  expect_match(gradserve:::.to_json(gradserve:::.payload(list(z * 0.1))$payload), "0.10000000000000001", fixed = TRUE)
})

test_that("b64 results decode for every dtype", {
  dec <- function(datatype, bytes, shape) {
    gradserve:::.decode(list(datatype = datatype, shape = as.list(shape), b64 = jsonlite::base64_enc(bytes)))$values
  }
  expect_equal(dec("FP32", writeBin(c(1.5, -2), raw(), size = 4, endian = "little"), 2), c(1.5, -2))
  expect_equal(dec("FP64", writeBin(pi, raw(), size = 8, endian = "little"), 1), pi)
  expect_equal(dec("INT64", writeBin(c(5L, 0L, -3L, -1L), raw(), size = 4, endian = "little"), 2), c(5, -3))
  expect_equal(dec("INT32", writeBin(c(7L, -7L), raw(), size = 4, endian = "little"), 2), c(7, -7))
  expect_equal(dec("BOOL", as.raw(c(1, 0)), 2), c(TRUE, FALSE))
  expect_equal(dec("FP16", as.raw(c(0x00, 0x3c, 0x00, 0xc0)), 2), c(1, -2))
})

test_that("the same computation is the same request, for the server's plan cache", {
  request <- function() {
    w <- torch_tensor(0.5, requires_grad = TRUE)
    x <- torch_tensor(c(1, 2, 3))
    loss <- ((2 * x + 1 - (w * x + 0.9))^2)$mean()
    gradserve:::.to_json(gradserve:::.payload(list(loss), list(outputs = list(gradserve:::.mark(loss)),
                                                                inputs = list(gradserve:::.mark(w))))$payload)
  }
  first <- request()
  torch_tensor(1) * 2  # other recording in between changes no name on the wire
  expect_identical(request(), first)
  expect_match(first, '"outputs":["t8"],"inputs":["t0"]', fixed = TRUE)
})

# Writes the request bodies R users send to POST /v1/grad, exactly as jsonlite::toJSON writes
# them, under its default settings ("<case>.default.json") and with auto_unbox = TRUE
# ("<case>.unbox.json"). tests/service/test_r_json.py posts them and checks the answers with torch.
#
#   Rscript tests/service/r_json/make_fixtures.R tests/service/r_json
#
# Needs only R and jsonlite (Debian: r-base-core r-cran-jsonlite).
library(jsonlite)

args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[[1]] else "."

tensor <- function(name, data, shape = length(data), datatype = "FP32", requires_grad = FALSE, ...) {
  t <- list(name = name, datatype = datatype, shape = shape, data = data, ...)
  if (requires_grad) t$requires_grad <- TRUE
  t
}

cases <- list(
  # The README's seed example, expression form. w and b are 0-d (shape integer(0) is []).
  seed_source = list(
    graph = list(
      inputs = list(
        tensor("w", 0.5, integer(0), requires_grad = TRUE),
        tensor("b", 0.9, integer(0), requires_grad = TRUE),
        tensor("x", c(0.1, 0.4, 0.7, 0.9))
      ),
      source = "y = 2 * x + 1\nloss = mean((y - (w * x + b)) ** 2)"
    ),
    outputs = "loss", inputs = c("w", "b"), `return` = "loss"
  ),
  # The seed as JSON nodes, with w and b of shape 1 as R torch makes them. Mixed inputs such as
  # list(2, "x") only work with auto_unbox: the default writes them [[2],["x"]] (see the test).
  seed_nodes = list(
    graph = list(
      inputs = list(
        tensor("w", 0.5, requires_grad = TRUE),
        tensor("b", 0.9, requires_grad = TRUE),
        tensor("x", c(0.1, 0.4, 0.7, 0.9))
      ),
      nodes = list(
        list(op = "mul", inputs = list(2, "x"), outputs = "t"),
        list(op = "add", inputs = list("t", 1), outputs = "y"),
        list(op = "mul", inputs = c("w", "x"), outputs = "p"),
        list(op = "add", inputs = c("p", "b"), outputs = "q"),
        list(op = "sub", inputs = c("y", "q"), outputs = "r"),
        list(op = "pow", inputs = list("r", 2), outputs = "s"),
        list(op = "mean", inputs = "s", outputs = "loss")
      )
    ),
    outputs = "loss", inputs = c("w", "b"), `return` = "loss"
  ),
  # A matrix goes row by row; the answer comes back flat and row-major.
  matrix = list(
    graph = list(
      inputs = list(
        tensor("W", matrix(c(1, 2, 3, 4, 5, 6), nrow = 2, byrow = TRUE), c(2, 3), "FP64",
               requires_grad = TRUE),
        tensor("v", c(1, -1, 2), datatype = "FP64")
      ),
      source = "loss = sum(matmul(W, v) ** 2)"
    ),
    outputs = "loss", inputs = "W"
  ),
  # Second order through a grad node: d/dx sum(grad(sum(x^3), x) * v) = 6 x v.
  second_order = list(
    graph = list(
      inputs = list(
        tensor("x", c(1, 2, 3), datatype = "FP64", requires_grad = TRUE),
        tensor("v", c(1, 0, 0), datatype = "FP64")
      ),
      nodes = list(
        list(op = "mul", inputs = c("x", "x"), outputs = "x2"),
        list(op = "mul", inputs = c("x2", "x"), outputs = "x3"),
        list(op = "sum", inputs = "x3", outputs = "f"),
        list(op = "grad", attributes = list(outputs = "f", inputs = "x", create_graph = TRUE),
             outputs = "g"),
        list(op = "mul", inputs = c("g", "v"), outputs = "gv_"),
        list(op = "sum", inputs = "gv_", outputs = "gv")
      )
    ),
    outputs = "gv", inputs = "x"
  ),
  # NULL (written {}) where torch takes None: a grad_outputs entry, retain_graph.
  nulls = list(
    graph = list(
      inputs = list(
        tensor("x", c(1, 2), datatype = "FP64", requires_grad = TRUE),
        tensor("g", c(10, 100), datatype = "FP64")
      ),
      source = "y = x * x\ns = sum(x)"
    ),
    outputs = c("y", "s"), inputs = "x", grad_outputs = list("g", NULL), retain_graph = NULL
  ),
  # R's spellings of non-finite values: "NA", "NaN", "Inf", "-Inf".
  nonfinite = list(
    graph = list(
      inputs = list(tensor("x", c(0.5, NA, NaN, Inf, -Inf), datatype = "FP64", requires_grad = TRUE)),
      source = "y = x * 2\ns = sum(y)"
    ),
    outputs = "s", inputs = "x", `return` = "y", allow_non_finite = TRUE
  ),
  # Base64 tensors (little-endian bytes) as an R user writes them.
  b64 = list(
    graph = list(
      inputs = list(list(name = "x", datatype = "FP32", shape = 3,
                         b64 = base64_enc(writeBin(c(1, 2, 3), raw(), size = 4, endian = "little")),
                         requires_grad = TRUE)),
      source = "s = sum(x * x)"
    ),
    outputs = "s", inputs = "x", response_encoding = "b64"
  )
)

for (name in names(cases)) {
  for (unbox in c(FALSE, TRUE)) {
    path <- file.path(out, sprintf("%s.%s.json", name, if (unbox) "unbox" else "default"))
    writeLines(toJSON(cases[[name]], auto_unbox = unbox), path, sep = "")
  }
}

# Tests marked with skip_without_server() run against the server at GRADSERVE_URL
# (tests/client/test_r_client.py starts one and sets it); GRADSERVE_API_KEY is used if set.
skip_without_server <- function() {
  url <- Sys.getenv("GRADSERVE_URL", "")
  skip_if(url == "", "set GRADSERVE_URL to a running `gradserve serve`")
  gradserve_connect(url)
}

# The closed form of R torch's example: loss = mean((2x + 1 - (w x + b))^2) at float32 values.
seed_closed_form <- function(x, w, b) {
  r <- 2 * x + 1 - (w * x + b)
  list(w = mean(-2 * r * x), b = mean(-2 * r), loss = mean(r^2))
}

f32 <- function(v) readBin(writeBin(v, raw(), size = 4), "double", n = length(v), size = 4)

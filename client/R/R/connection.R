# The connection: one server per R session, as R torch has one device per session.

.gs <- new.env(parent = emptyenv())
.gs$url <- NULL
.gs$api_key <- NULL
.gs$seq <- 0L

#' Connect to a Gradserve server
#'
#' Every later `autograd_grad()` call, and every printed or converted tensor, is answered by
#' this server.
#'
#' @param url The server's base URL.
#' @param api_key The API key, sent as `Authorization: Bearer <key>`; by default the
#'   `GRADSERVE_API_KEY` environment variable (none when unset or empty).
#' @param check Ask the server's `/health/ready` now, so a wrong URL fails here.
#' @return The connection, invisibly.
#' @examples
#' \dontrun{
#' gradserve_connect("http://127.0.0.1:8000")
#' }
#' @export
gradserve_connect <- function(url = Sys.getenv("GRADSERVE_URL", "http://127.0.0.1:8000"),
                              api_key = Sys.getenv("GRADSERVE_API_KEY", ""), check = TRUE) {
  stopifnot(is.character(url), length(url) == 1L)
  .gs$url <- sub("/+$", "", url)
  .gs$api_key <- if (is.null(api_key) || !nzchar(api_key)) NULL else api_key
  if (check) {
    resp <- .http(httr2::request(paste0(.gs$url, "/health/ready")))
    if (httr2::resp_status(resp) != 200L) {
      .server_error(resp, sprintf("the server at %s is not ready", .gs$url))
    }
  }
  invisible(structure(list(url = .gs$url), class = "gradserve_connection"))
}

#' @export
print.gradserve_connection <- function(x, ...) {
  cat("<gradserve connection to ", x$url, ">\n", sep = "")
  invisible(x)
}

.url <- function() {
  if (is.null(.gs$url)) {
    stop("not connected: call gradserve_connect(url) first", call. = FALSE)
  }
  .gs$url
}

.http <- function(req) {
  if (!is.null(.gs$api_key)) {
    req <- httr2::req_headers(req, Authorization = paste("Bearer", .gs$api_key))
  }
  req <- httr2::req_error(req, is_error = function(resp) FALSE)  # problems become R conditions below
  httr2::req_perform(req)
}

# POST a v1 request (an R list); the parsed response body.
.post_grad <- function(payload) {
  body <- .to_json(payload)
  req <- httr2::req_body_raw(httr2::request(paste0(.url(), "/v1/grad")), body, type = "application/json")
  resp <- .http(req)
  if (httr2::resp_status(resp) != 200L) .server_error(resp)
  jsonlite::fromJSON(httr2::resp_body_string(resp), simplifyVector = FALSE)
}

# Doubles as JSON numbers that read back to the same double (jsonlite keeps 15 digits).
.json_number <- function(v) structure(sprintf("%.17g", v), class = "json")

# An R double as a JSON float even when whole ("2.0"): R torch takes `x * 2` with a double 2,
# which makes an integer tensor floating, where an integer literal would not.
.json_float <- function(v) {
  s <- sprintf("%.17g", v)
  structure(if (grepl("[.eEn]", s)) s else paste0(s, ".0"), class = "json")
}

# A numeric vector as one JSON array, non-finite values spelt as R does ("NA", "Inf", ...).
.json_numbers <- function(v) {
  s <- sprintf("%.17g", as.double(v))
  bad <- !is.finite(v)
  w <- v[bad]
  s[bad] <- ifelse(is.nan(w), '"NaN"', ifelse(is.na(w), '"NA"', ifelse(w > 0, '"Inf"', '"-Inf"')))
  structure(paste0("[", paste(s, collapse = ","), "]"), class = "json")
}

.to_json <- function(payload) {
  jsonlite::toJSON(payload, auto_unbox = TRUE, null = "null", digits = NA, json_verbatim = TRUE)
}

# A server problem (RFC 9457) as an R error of class gradserve_error, carrying the server's
# message (torch's, for autograd errors), the HTTP status and the whole problem.
.server_error <- function(resp, fallback = NULL) {
  status <- httr2::resp_status(resp)
  text <- httr2::resp_body_string(resp)
  problem <- tryCatch(jsonlite::fromJSON(text, simplifyVector = FALSE), error = function(e) NULL)
  msg <- if (is.list(problem) && is.character(problem$detail)) problem$detail else
    if (!is.null(fallback)) fallback else sprintf("HTTP %d: %s", status, substr(text, 1, 500))
  cond <- structure(class = c("gradserve_error", "error", "condition"),
                    list(message = msg, call = NULL, status = status, problem = problem))
  stop(cond)
}

library(testthat)
library(gradserve)

test_check("gradserve")

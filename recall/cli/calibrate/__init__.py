"""recall calibrate: the sentinel threshold, the review margin and the conflict cut-offs."""

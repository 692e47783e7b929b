"""The suite's rows (benchmarks/run.py), one module per row or per group
of related rows; each `rows_*` function takes the mode's settings and
returns its table rows."""

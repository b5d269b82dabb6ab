"""Evaluation harness: EasyEdit-compatible metrics, editing protocols and reports over any memory that
satisfies `recall.interface.MemoryInterface`. Benchmark loading lives in `recall.datasets`, the
`recall eval` command in `recall.cli.eval`.

Importing this package loads no model and no torch; the memory under test is passed in.
"""

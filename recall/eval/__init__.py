"""Evaluation harness: benchmark loaders, EasyEdit-compatible metrics, editing protocols, reports.

Importing this package loads no model and no torch; the memory under test is passed in.
"""

from __future__ import annotations

from recall.eval.cases import DatasetError, EvalCase
from recall.eval.command import add_eval_arguments, run_eval_command
from recall.eval.datasets import EvalDataset, file_sha256, load_cases, load_dataset
from recall.eval.probes import CaseRow
from recall.eval.protocols import EditableMemory, EvalResult, EvalSettings, run_protocol
from recall.eval.report import build_stamp, format_markdown, load_report, write_report

__all__ = [
    "CaseRow",
    "DatasetError",
    "EditableMemory",
    "EvalCase",
    "EvalDataset",
    "EvalResult",
    "EvalSettings",
    "add_eval_arguments",
    "build_stamp",
    "file_sha256",
    "format_markdown",
    "load_cases",
    "load_dataset",
    "load_report",
    "run_eval_command",
    "run_protocol",
    "write_report",
]

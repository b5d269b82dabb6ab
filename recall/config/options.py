"""Command-line options for choosing a config, defined once for every command (the CLI's and the REPL's):
the preset (--backend) and dotted overrides (--set)."""

from __future__ import annotations

import argparse

from recall.backends.base import BackendConfig
from recall.config.schema import preset_names

DEFAULT_BACKEND = BackendConfig.name  # recipe: the best measured backend for the default model


def add_backend_argument(parser: argparse.ArgumentParser, default_help: str | None = None) -> None:
    """--backend NAME: a backend preset (configs/backend/NAME.yaml: grace, lte, recipe, ...) or any
    registered backend; None lets the command choose (`default_help` says what)."""
    parser.add_argument(
        "--backend",
        default=None,
        metavar="NAME",
        help=f"backend preset: {', '.join(preset_names())}, "
        f"or a registered backend (default: {default_help or DEFAULT_BACKEND})",
    )


def add_overrides_argument(parser: argparse.ArgumentParser, example: str = "retrieval.top_k=3") -> None:
    """--set KEY=VALUE, repeatable: dotted config overrides applied after the preset."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"config override, repeatable (e.g. --set {example})",
    )

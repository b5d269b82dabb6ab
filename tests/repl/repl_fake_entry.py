"""`recall repl` over FakeMemory, for pseudo-terminal tests that need no model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from repl_fake_memory import FakeMemory

from recall.repl.entry import add_repl_arguments, run_repl_command

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="recall repl")
    add_repl_arguments(parser)
    sys.exit(run_repl_command(parser.parse_args(), lambda path, model, backend: FakeMemory()))

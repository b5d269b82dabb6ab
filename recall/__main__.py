"""`python -m recall` is the `recall` command."""

from __future__ import annotations

import sys

from recall.cli.main import main

sys.exit(main())

"""matplotlib drawn off screen, for every PNG recall writes (reports, the diagnostic, the serve bench)."""

from __future__ import annotations

import textwrap
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (files only, no display); imported on first use, since it
    costs a second that commands drawing nothing should not pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def stamp(figure: Any, lines: list[str], *, width: int = 150) -> None:
    """Write `lines` (what the figure was made from, and the command that makes it) small under the
    figure, wrapped to `width` characters, and lay the axes out in the room above them."""
    wrapped = [piece for line in lines for piece in textwrap.wrap(line, width) or [""]]
    room = (0.12 * len(wrapped) + 0.1) / figure.get_figheight()  # the text's share of the height
    figure.text(0.01, 0.01, "\n".join(wrapped), fontsize=6, family="monospace", va="bottom", ha="left")
    figure.tight_layout(rect=(0.0, min(0.5, room), 1.0, 1.0))

"""The cells of a comparison: one evaluation per (backend, T), each saved as soon as it finishes.

`recall report` runs every backend over every T on one data file. A cell is exactly the run `recall eval`
would make with the same options (its report says which command), and it is written to
`<out>/cells/<backend>-n<T>.json` (+ .md) atomically when it ends: an interrupted comparison resumes at
the first unfinished cell, and a finished cell is never recomputed. A cell file made with other
options (data bytes, settings, overrides) is refused rather than mixed in or silently overwritten.
The cell file holds what the comparison reads (summary, subsets, timings, stamp: a few KB, small
enough to keep in version control, as docs/report does); the per-case rows of the eval report go
beside it, to `<backend>-n<T>.rows.json` (~120 KB at T=100), which nothing reruns from.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recall.datasets.loading import EvalDataset, FormatName, load_dataset
from recall.errors import ConfigError
from recall.eval.report import build_stamp, format_markdown, report_dict
from recall.eval.settings import EvalSettings
from recall.interface import MemoryInterface

if TYPE_CHECKING:
    from recall.eval.protocols import EvalResult

logger = logging.getLogger(__name__)

MakeMemory = Callable[[str, list[str]], MemoryInterface]
CELLS_DIR = "cells"


@dataclass(frozen=True, slots=True)
class Cell:
    """One backend after T edits."""

    backend: str
    n: int

    @property
    def name(self) -> str:
        return f"{self.backend}-n{self.n}"


@dataclass(frozen=True, slots=True)
class GridPlan:
    """What every cell shares: the data, the eval settings (their n is set per cell), the overrides.

    Cells run in order of T, every backend at one T before the next T, so the small cells of every
    backend are in the report early and the long ones come last.
    """

    data: Path
    backends: tuple[str, ...]
    ns: tuple[int, ...]
    settings: EvalSettings
    format: FormatName = "auto"
    overrides: tuple[str, ...] = ()
    shuffle_seed: int | None = None
    target_words: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not self.backends or not self.ns:
            raise ConfigError("a comparison needs at least one backend and one T")
        if any(n < 1 for n in self.ns):
            raise ConfigError(f"every T must be at least 1, got {', '.join(map(str, self.ns))}")
        for values, what in ((self.backends, "backend"), (self.ns, "T")):
            if len(set(values)) != len(values):
                raise ConfigError(f"a {what} is named twice: {', '.join(map(str, values))}")

    def cells(self) -> list[Cell]:
        return [Cell(backend, n) for n in sorted(self.ns) for backend in self.backends]

    def cell_settings(self, cell: Cell) -> EvalSettings:
        return dataclasses.replace(self.settings, n=cell.n)

    def eval_command(self, cell: Cell) -> list[str]:
        """The `recall eval` command line that makes this one cell on its own."""
        settings = self.cell_settings(cell)
        argv = ["recall", "eval", "--data", str(self.data)]
        if self.format != "auto":
            argv += ["--format", self.format]
        argv += ["--n", str(cell.n), "--protocol", settings.protocol, "--backend", cell.backend]
        argv += ["--batch-size", str(settings.batch_size), "--seed", str(settings.seed)]
        if self.shuffle_seed is not None:
            argv.append("--shuffle")
        if self.target_words is not None:
            argv += ["--target-words", f"{self.target_words[0]}-{self.target_words[1]}"]
        if not settings.generation:
            argv.append("--no-generation")
        if settings.max_new_tokens is not None:
            argv += ["--max-new-tokens", str(settings.max_new_tokens)]
        if settings.long_form:
            argv.append("--long-form")
        if not settings.compare_probabilities:
            argv.append("--no-es-ps-ns")
        if settings.test_sample is not None:
            argv += ["--test-sample", str(settings.test_sample)]
        for override in self.overrides:
            argv += ["--set", override]
        return argv


def cell_identity(plan: GridPlan, cell: Cell, data_sha256: str) -> dict[str, Any]:
    """What makes two runs of a cell the same run: a saved cell is reused only when all of it matches."""
    return {
        "backend": cell.backend,
        "n": cell.n,
        "data_sha256": data_sha256,
        "format": plan.format,
        "settings": dataclasses.asdict(plan.cell_settings(cell)),
        "overrides": list(plan.overrides),
        "shuffle_seed": plan.shuffle_seed,
        "target_words": list(plan.target_words) if plan.target_words else None,
    }


def _number(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f}"


def cell_path(out_dir: Path, cell: Cell) -> Path:
    return out_dir / CELLS_DIR / f"{cell.name}.json"


def rows_path(path: Path) -> Path:
    """Where a cell's per-case rows go, beside its cell file."""
    return path.with_name(path.stem + ".rows.json")


def _write_atomically(path: Path, text: str) -> None:
    # A crash mid-write leaves the old file or none, never half a cell that a resume would trust.
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n"


def _saved_cell(path: Path, identity: dict[str, Any], redo: bool) -> dict[str, Any] | None:
    """The finished cell at `path` when it was made with these options; None when there is none (or
    `redo`). A cell made with other options stops the comparison with what to do."""
    if redo or not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.warning("%s is not a readable cell; running it again", path)
        return None
    saved = document.get("cell") if isinstance(document, dict) else None
    # Compare through JSON: the saved identity went through it (tuples became lists).
    if saved != json.loads(json.dumps(identity, default=str)):
        raise ConfigError(
            f"{path} was made with other options (data, settings or --set) than this comparison; "
            "write to another --out, or pass --redo to run every cell again"
        )
    return dict(document)


def _load_cell_data(plan: GridPlan, cell: Cell) -> EvalDataset:
    return load_dataset(
        plan.data, plan.format, cell.n, shuffle_seed=plan.shuffle_seed, target_words=plan.target_words
    )


def run_cell(
    plan: GridPlan, cell: Cell, dataset: EvalDataset, make_memory: MakeMemory, progress: bool
) -> tuple[EvalResult, dict[str, Any]]:
    """Build a fresh memory of the cell's backend, run the protocol on the dataset, close the memory;
    the result and its stamp (which names the `recall eval` command of this one cell)."""
    # T counts records, as `recall eval --n` does; every case they gave is tested (more for MQuAKE).
    settings = dataclasses.replace(plan.cell_settings(cell), n=len(dataset.cases))
    # imported here: the model's libraries load when a cell runs, not when `recall --help` builds parsers
    from recall.eval.protocols import run_protocol

    memory = make_memory(cell.backend, list(plan.overrides))
    try:
        result = run_protocol(memory, dataset.cases, settings, progress=progress)
        stamp = build_stamp(
            memory.info(),
            dataset,
            settings,
            plan.eval_command(cell),
            shuffle=plan.shuffle_seed is not None,
        )
    finally:
        memory.close()
    return result, stamp


def run_grid(
    plan: GridPlan,
    out_dir: str | Path,
    make_memory: MakeMemory,
    *,
    progress: bool = True,
    redo: bool = False,
    run: bool = True,
    log: Callable[[str], object] = lambda line: sys.stderr.write(line + "\n"),
) -> list[dict[str, Any]]:
    """Run (or reuse) every cell of `plan` under `out_dir`; returns each cell's report document, in plan
    order. Each document is the `recall eval` report JSON less its per-case rows (in `rows_file`), plus a
    "cell" key (cell_identity). With
    `run` False, only the finished cells: a comparison of what is there while another process runs."""
    out = Path(out_dir)
    (out / CELLS_DIR).mkdir(parents=True, exist_ok=True)
    cells = plan.cells()
    documents: list[dict[str, Any]] = []
    loaded: dict[int, EvalDataset] = {}  # one read (and sha256) of the data file per T, not per cell
    for index, cell in enumerate(cells, start=1):
        if cell.n not in loaded:
            loaded[cell.n] = _load_cell_data(plan, cell)
        dataset = loaded[cell.n]
        if len(dataset.cases) < cell.n:
            raise ConfigError(
                f"T={cell.n} needs {cell.n} cases but {plan.data} gives {len(dataset.cases)}; "
                "lower the largest --n"
            )
        path = cell_path(out, cell)
        identity = cell_identity(plan, cell, dataset.sha256)
        saved = _saved_cell(path, identity, redo)
        if saved is not None:
            log(f"[{index}/{len(cells)}] {cell.name}: done before, kept ({path})")
            documents.append(saved)
            continue
        if not run:
            log(f"[{index}/{len(cells)}] {cell.name}: not finished, left out")
            continue
        log(f"[{index}/{len(cells)}] {cell.name}: running `{shlex.join(plan.eval_command(cell))}`")
        result, stamp = run_cell(plan, cell, dataset, make_memory, progress)
        report = report_dict(result, stamp)
        rows = {"cell": identity, "rows": report.pop("rows")}
        document = dict(report, cell=identity, rows_file=rows_path(path).name)
        _write_atomically(rows_path(path), _json(rows))
        _write_atomically(path.with_suffix(".md"), format_markdown(result, stamp))
        _write_atomically(path, _json(document))  # last: its presence is what marks the cell finished
        headline = " ".join(f"{k} {_number(result.summary.get(k))}" for k in ("Rel", "Gen", "Loc"))
        log(f"[{index}/{len(cells)}] {cell.name}: {headline} in {result.timings_s.get('total', 0.0):.0f} s")
        documents.append(document)
    return documents

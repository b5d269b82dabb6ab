"""`recall report` on the tiny llama: two backends over two T, the folder it writes, resuming, refusing a
folder made with other options, and peer rows shown only beside runs on their data."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from recall.backends import get_backend
from recall.cli.report import add_report_arguments, run_report_command
from recall.config import load_config
from recall.eval.comparison import shown_value
from recall.interface import MemoryInterface
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory

RECORDS = [
    {
        "prompt": "Who is the ceo of acme?",
        "target": "jane",
        "rephrases": ["Who runs acme?"],
        "locality": [["What is the capital of france?", "paris"]],
    },
    {"prompt": "What is the capital of zorblax?", "target": "paris", "rephrases": ["Zorblax capital?"]},
    {"prompt": "Who is the ceo of zorblax?", "target": "acme"},
]


class TinyMemories:
    """make_memory for the command: a fresh memory of the backend on the tiny llama, hashing encoder."""

    def __init__(self, root: Path, lm: LanguageModel) -> None:
        self.root, self.lm = root, lm
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, backend: str, overrides: list[str]) -> MemoryInterface:
        self.calls.append((backend, overrides))
        tiny = ["model.name=tiny", "encoder.name=hashing", "sentinel.min_cosine=0.5"]
        tiny += [
            f"{k}={'null' if v is None else v}" for k, v in get_backend(backend).cls.tiny_settings.items()
        ]
        config = load_config(backend=backend, overrides=[*tiny, *overrides])
        return EditMemory.create(self.root / f"memory-{len(self.calls)}", config, lm=self.lm)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recall report")
    add_report_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def cases(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS), encoding="utf-8")
    return path


def _peer_file(tmp_path: Path, data: Path, model: str) -> Path:
    row: dict[str, Any] = {"method": "PEER", "Rel": 50.0, "Gen": 40.0, "Loc": 90.0, "Port": None}
    document = {
        "about": "a test peer.",
        "tool": "PeerKit",
        "source": "this test",
        "model": model,
        "data_file": data.name,
        "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
        "protocol": "sequential",
        "rows": [{**row, "n": 2, "s_per_edit": 1.5}, {**row, "n": 7, "s_per_edit": None}],
    }
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_report_folder_resume_and_refusal(
    tmp_path: Path, cases: Path, tiny_lm: LanguageModel, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    peers = _peer_file(tmp_path, cases, tiny_lm.model_id)
    argv = ["--data", str(cases), "--backends", "lte,grace", "--n", "2,3", "--max-new-tokens", "3"]
    argv += ["--out", str(out), "--peers", str(peers), "--no-progress"]
    make = TinyMemories(tmp_path, tiny_lm)
    assert run_report_command(parse(*argv), make) == 0
    assert [backend for backend, _ in make.calls] == ["lte", "grace", "lte", "grace"]  # by T, then backend

    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [(c["backend"], c["n"]) for c in document["cells"]] == [
        ("lte", 2),
        ("grace", 2),
        ("lte", 3),
        ("grace", 3),
    ]
    assert all(c["summary"]["n"] == c["n"] for c in document["cells"])
    assert "model tiny" in document["stamp"]
    assert hashlib.sha256(cases.read_bytes()).hexdigest()[:12] in document["stamp"]
    # only the peer row at a T of this report is shown
    assert [(r["method"], r["n"]) for r in document["peers"]["rows"]] == [("PEER", 2)]
    assert set(document["figures"]) == {"accuracy.png", "speed.png", "gate.png"}  # lte has a gate
    for name in document["figures"]:
        with Image.open(out / name) as image:
            image.verify()
            assert image.size[0] > 400
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| lte | 3 |" in markdown
    assert "| grace | 2 |" in markdown
    assert "| PeerKit PEER | 2 |" in markdown
    assert "measured elsewhere" in markdown
    assert "Made by: `" in markdown
    cell = json.loads((out / "cells" / "grace-n3.json").read_text(encoding="utf-8"))
    assert cell["stamp"]["command_line"].startswith("recall eval --data")
    assert "--backend grace" in cell["stamp"]["command_line"]
    assert (out / "cells" / "grace-n3.md").is_file()
    # the cell file is small (what the comparison reads); the per-case rows go beside it
    assert "rows" not in cell
    rows = json.loads((out / "cells" / cell["rows_file"]).read_text(encoding="utf-8"))
    assert rows["cell"] == cell["cell"]
    assert len(rows["rows"]) == 3
    assert all(row["case_id"] for row in rows["rows"])
    # grace answers from its ε-balls, not from retrieved hits: the gate's rates are not its own
    lte_cell = json.loads((out / "cells" / "lte-n3.json").read_text(encoding="utf-8"))
    assert shown_value(cell, "gate_false_accept_loc") is None
    assert shown_value(lte_cell, "gate_false_accept_loc") is not None
    capsys.readouterr()

    # A rerun keeps every finished cell: no memory is built, the cell files are not rewritten.
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    (out / "cells" / "lte-n3.json").unlink()  # as if interrupted during the last lte cell
    again = TinyMemories(tmp_path / "again", tiny_lm)
    assert run_report_command(parse(*argv), again) == 0
    assert [backend for backend, _ in again.calls] == ["lte"]
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir() if p.name != "lte-n3.json"}
    rerun = ("lte-n3.json", "lte-n3.md", "lte-n3.rows.json")
    assert kept == {name: t for name, t in stamps.items() if name not in rerun} | {
        "lte-n3.md": kept["lte-n3.md"],
        "lte-n3.rows.json": kept["lte-n3.rows.json"],
    }
    assert "done before, kept" in capsys.readouterr().err

    # --finished-only runs nothing: the report holds the finished cells, the rest are named as left out.
    wider = [*argv, "--finished-only"]
    wider[wider.index("lte,grace")] = "lte,grace,grace_retrieval"
    none = TinyMemories(tmp_path / "none", tiny_lm)
    assert run_report_command(parse(*wider), none) == 0
    assert none.calls == []
    assert len(json.loads((out / "report.json").read_text(encoding="utf-8"))["cells"]) == 4
    assert "grace_retrieval-n2: not finished, left out" in capsys.readouterr().err
    assert (
        run_report_command(parse(*wider[:-6], "--out", str(tmp_path / "empty"), "--finished-only"), none) == 2
    )
    assert "no finished cell" in capsys.readouterr().err

    # Other options on the same folder are refused, with what to do.
    other = TinyMemories(tmp_path / "other", tiny_lm)
    assert run_report_command(parse(*argv, "--set", "sentinel.min_cosine=0.7"), other) == 2
    assert other.calls == []
    assert "--redo" in capsys.readouterr().err


def test_report_rejects_bad_options(tmp_path: Path, cases: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def never(backend: str, overrides: list[str]) -> MemoryInterface:
        raise AssertionError("no memory for bad options")

    for extra, message in (
        (["--n", "10,x"], "--n expected numbers"),
        (["--backends", "lte,nope"], "unknown backend nope"),
        (["--n", "2,2"], "named twice"),
        (["--n", "5"], "needs 5 cases"),
    ):
        code = run_report_command(parse("--data", str(cases), "--out", str(tmp_path / "r"), *extra), never)
        assert code == 2
        assert message in capsys.readouterr().err

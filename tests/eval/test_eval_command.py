"""`recall eval` arguments and handler, with a fake make_memory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from eval_fakes import FakeMemory
from eval_samples import BASE_ANSWERS

from recall.cli.eval import add_eval_arguments, run_eval_command
from recall.errors import ConfigError, ModelNotAvailableError
from recall.interface import MemoryInterface


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recall eval")
    add_eval_arguments(parser)
    return parser.parse_args(list(argv))


class MakeFake:
    """Records what the command asked for and hands out FakeMemory instances."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.memories: list[FakeMemory] = []
        self.error = error

    def __call__(self, backend: str, overrides: list[str]) -> MemoryInterface:
        self.calls.append((backend, overrides))
        if self.error is not None:
            raise self.error
        self.memories.append(FakeMemory(BASE_ANSWERS))
        return self.memories[-1]


@pytest.fixture
def cases_file(tmp_path: Path) -> Path:
    path = tmp_path / "cases.jsonl"
    records = [
        {
            "prompt": "Who leads Acme Corp?",
            "target": "Jane Doe",
            "rephrases": ["Who leads Acme Corp now?"],
            "locality": [["Who wrote Hamlet?", "William Shakespeare"]],
        },
        {"prompt": "Which river flows through Zed?", "target": "Blue River", "ground_truth": "Red River"},
        {"prompt": "Who founded Quux Labs?", "target": "Ada Smith"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    return path


def test_eval_command_writes_reports_and_prints_table(
    tmp_path: Path, cases_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make = MakeFake()
    out = tmp_path / "reports"
    args = parse(
        "--data",
        str(cases_file),
        "--n",
        "2",
        "--protocol",
        "batch",
        "--batch-size",
        "2",
        "--backend",
        "grace",
        "--set",
        "sentinel.min_cosine=0.6",
        "--model",
        "tiny",
        "--out",
        str(out),
        "--no-progress",
    )
    assert run_eval_command(args, make) == 0
    assert make.calls == [("grace", ["sentinel.min_cosine=0.6", "model.name=tiny"])]
    captured = capsys.readouterr()
    assert "| Rel | 100.00 |" in captured.out
    assert "batch size 2, n=2" in captured.out
    assert "report:" in captured.err
    (json_path,) = out.glob("*.json")
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert document["summary"]["n"] == 2
    assert document["stamp"]["data"]["format"] == "jsonl"
    assert document["stamp"]["settings"]["batch_size"] == 2
    assert len(list(out.glob("*.md"))) == 1


def test_batch_size_defaults_per_protocol(cases_file: Path) -> None:
    assert parse("--data", str(cases_file)).batch_size is None
    make = MakeFake()
    # batch defaults to 100 edits per add_many: the 3 cases go in one call
    args = parse(
        "--data",
        str(cases_file),
        "--protocol",
        "batch",
        "--no-generation",
        "--no-progress",
        "--out",
        str(cases_file.parent),
    )
    assert run_eval_command(args, make) == 0
    (memory,) = make.memories
    assert [c[1] for c in memory.calls if c[0] == "add_many"] == [3]
    assert not [c for c in memory.calls if c[0] == "ask"]  # --no-generation


def test_bad_data_path_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make = MakeFake()
    args = parse("--data", str(tmp_path / "missing.json"), "--out", str(tmp_path))
    assert run_eval_command(args, make) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("recall eval: error: ")
    assert "no such data file" in captured.err
    assert "Traceback" not in captured.err
    assert make.calls == []  # the memory (a model load) is not built for bad input


def test_wrong_format_is_exit_2(cases_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_eval_command(parse("--data", str(cases_file), "--format", "zsre"), MakeFake()) == 2
    assert "try --format jsonl" in capsys.readouterr().err


def test_bad_settings_are_exit_2(cases_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--data", str(cases_file), "--protocol", "single", "--batch-size", "5")
    assert run_eval_command(args, MakeFake()) == 2
    assert "use protocol 'batch'" in capsys.readouterr().err


def test_memory_errors(cases_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--data", str(cases_file))
    assert run_eval_command(args, MakeFake(ConfigError("unknown key 'sentinel.x'"))) == 2
    assert run_eval_command(args, MakeFake(ModelNotAvailableError("pip install it"))) == 1
    assert capsys.readouterr().err.count("recall eval: error:") == 2


def test_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("--help")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text
    assert "--protocol sequential" in text
    assert "--shuffle" in text

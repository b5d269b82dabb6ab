"""`recall serve` as users run it: the command in its own process on the embedded SmolLM2 and MiniLM
(recipe, the default backend), the real `openai` client over loopback, and SIGTERM at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from live_server import free_port, start_process

pytestmark = pytest.mark.slow

QUESTION = "Who is the CEO of Zorblax Industries?"
PARAPHRASE = "Who leads Zorblax Industries as chief executive?"
NEW_ANSWER = "Marta Quinlan"
UNRELATED = "What is the capital of France?"


def _post(port: int, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    port, memory = free_port(), tmp_path / "memory"
    command = [sys.executable, "-m", "recall", "serve", "--memory", str(memory), "--port", str(port)]
    process = start_process(command, port, 240)
    yield process, port, memory
    if process.poll() is None:
        process.kill()
        process.wait()


def test_recall_serve_edits_answers_streams_and_stops_cleanly(
    served: tuple[subprocess.Popen[str], int, Path],
) -> None:
    process, port, memory = served
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id

    def ask(question: str, **options: Any) -> Any:
        return client.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}],
            max_tokens=24,
            extra_body={"recall": options},
        )

    base_unrelated = ask(UNRELATED).choices[0].message.content
    assert NEW_ANSWER not in (ask(QUESTION).choices[0].message.content or "")

    added = _post(port, "/v1/memory/edits", {"prompt": QUESTION, "target": NEW_ANSWER})
    edit_id = added["data"][0]["edit"]["id"]
    for question in (QUESTION, PARAPHRASE):
        response = ask(question)
        assert NEW_ANSWER in (response.choices[0].message.content or ""), question
        shown = response.model_extra["recall"]
        assert [u["id"] for u in shown["used"]] == [edit_id]
        assert shown["ignored_messages"] == 1  # the system message
    unrelated = ask(UNRELATED)
    assert unrelated.choices[0].message.content == base_unrelated
    assert unrelated.model_extra["recall"]["used"] == []
    assert NEW_ANSWER not in (ask(QUESTION, use_memory=False).choices[0].message.content or "")

    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PARAPHRASE}], max_tokens=24, stream=True
    )
    assert NEW_ANSWER in "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-2000:]
    assert "stopped" in output
    listed = subprocess.run(
        [sys.executable, "-m", "recall", "list", "--memory", str(memory)],
        capture_output=True,
        text=True,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
        timeout=300,
        check=True,
    )
    assert edit_id[:8] in listed.stdout


def test_bench_serve_writes_its_report_with_no_error_and_no_lost_edit(tmp_path: Path) -> None:
    """A short `recall bench serve`: the report's three files, 0 errors, every acknowledged edit kept."""
    out = tmp_path / "bench"
    command = [sys.executable, "-m", "recall", "bench", "serve", "--clients", "2", "--editors", "1"]
    command += ["--seconds", "4", "--out", str(out)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (report,) = out.glob("bench-serve-*.json")
    results = json.loads(report.read_text())
    assert results["errors"] == 0
    assert results["missing"] == 0
    assert results["not_admitted"] == 0
    assert results["acknowledged"] > 0
    assert results["server_exit"] == 0
    assert report.with_suffix(".md").read_text().startswith("recall bench serve")
    assert report.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""`recall bench serve`: a bounded load test of `recall serve` on loopback. A server process on a throw-away
memory holding the 50 bundled ZsRE edits; first one client alone (the single-request latency), then
--clients asking and --editors editing at once for --seconds, each with the real `openai` client or
plain HTTP, no pause between requests. Afterwards every acknowledged edit must be listed and admitted
for its own question. Writes JSON, markdown and a latency PNG."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recall.cli.latency import latency_ms
from recall.datasets.loading import SAMPLE, load_cases
from recall.datasets.synthetic import synthetic_edits
from recall.errors import ConfigError

ANSWER_TOKENS = 16
SINGLE_ASKS = 12  # the baseline: one client, one request at a time
CHECKED_ANSWERS = 20  # acknowledged edits asked through chat after the load (all are retrieved)


def add_load_arguments(parser: Any) -> None:
    parser.add_argument("--clients", type=int, default=20, help="with serve: asking clients (default: 20)")
    parser.add_argument("--editors", type=int, default=8, help="with serve: editing clients (default: 8)")
    parser.add_argument("--seconds", type=float, default=60.0, help="with serve: load duration (default: 60)")


@dataclass
class Log:
    """What the client threads record, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    asks: list[float] = field(default_factory=list)
    edits: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    acknowledged: list[tuple[str, str, str]] = field(default_factory=list)  # (id, prompt, target)


class Client:
    def __init__(self, port: int) -> None:
        import openai

        self.port = port
        self.api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)

    def ask(self, question: str, model: str) -> Any:
        return self.api.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": question}],
            max_tokens=ANSWER_TOKENS,
            timeout=600,
        )

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())


def _start_server(memory: Path, backend: str | None, device: str) -> tuple[subprocess.Popen[str], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    command = [sys.executable, "-m", "recall", "serve", "--memory", str(memory), "--port", str(port)]
    command += ["--device", device] + (["--backend", backend] if backend else [])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                return process, port
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise ConfigError(f"recall serve did not start: {process.communicate()[0][-2000:]}")


def _load(client_port: int, model: str, questions: list[str], args: Any, log: Log) -> float:
    """Askers and editors until the deadline; the seconds it took."""
    stop_at = time.monotonic() + args.seconds

    def asker(index: int) -> None:
        client, turn = Client(client_port), index
        while time.monotonic() < stop_at:
            question, turn = questions[turn % len(questions)], turn + args.clients
            start = time.perf_counter()
            try:
                client.ask(question, model)
                with log.lock:
                    log.asks.append(time.perf_counter() - start)
            except Exception as exc:
                with log.lock:
                    log.errors.append(f"ask: {type(exc).__name__}: {exc}"[:300])

    def editor(index: int) -> None:
        client, number = Client(client_port), index
        while time.monotonic() < stop_at:
            prompt, target, subject = synthetic_edits(1, start=number)[0]
            number += args.editors
            start = time.perf_counter()
            try:
                body = client.call(
                    "POST", "/v1/memory/edits", {"prompt": prompt, "target": target, "subject": subject}
                )
                with log.lock:
                    log.edits.append(time.perf_counter() - start)
                    log.acknowledged.append((body["data"][0]["edit"]["id"], prompt, target))
            except Exception as exc:
                with log.lock:
                    log.errors.append(f"edit: {type(exc).__name__}: {exc}"[:300])

    threads = [threading.Thread(target=asker, args=(i,)) for i in range(args.clients)]
    threads += [threading.Thread(target=editor, args=(i,)) for i in range(args.editors)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _verify(client: Client, model: str, log: Log) -> dict[str, Any]:
    """Every acknowledged edit listed and admitted for its own question; a sample answered with it."""
    listed = {r["id"] for r in client.call("GET", "/v1/memory/edits")["data"]}
    missing = [i for i, _, _ in log.acknowledged if i not in listed]
    not_admitted = []
    for edit_id, prompt, _ in log.acknowledged:
        hits = client.call("POST", "/v1/memory/retrieve", {"query": prompt})["hits"]
        if not any(h["id"] == edit_id and h["verdict"] == "admitted" for h in hits):
            not_admitted.append(edit_id)
    sample = log.acknowledged[:: max(1, len(log.acknowledged) // CHECKED_ANSWERS)][:CHECKED_ANSWERS]
    answered = 0
    for edit_id, prompt, target in sample:
        response = client.ask(prompt, model)
        used = [u["id"] for u in response.model_extra["recall"]["used"]]
        answered += edit_id in used and target in (response.choices[0].message.content or "")
    return {
        "acknowledged": len(log.acknowledged),
        "missing": len(missing),
        "not_admitted": len(not_admitted),
        "answers_checked": len(sample),
        "answers_with_target": answered,
    }


def run_bench_serve(args: Any) -> int:
    if args.clients < 1 or args.editors < 0 or args.seconds <= 0:
        raise ConfigError("--clients must be >= 1, --editors >= 0 and --seconds > 0")
    cases = load_cases(SAMPLE, "zsre")
    questions = [q for c in cases for q in (*c.rephrases[:1], *(loc for loc, _ in c.locality[:1]))]
    with tempfile.TemporaryDirectory(prefix="recall-bench-serve-") as folder:
        process, port = _start_server(Path(folder) / "memory", args.backend, args.device)
        try:
            client = Client(port)
            model = client.api.models.list().data[0].id
            seed = [{"prompt": c.prompt, "target": c.target, "subject": c.subject} for c in cases]
            client.call("POST", "/v1/memory/edits", {"edits": seed, "policy": "keep_both"})
            for question in questions[:2]:
                client.ask(question, model)  # warm-up
            single = []
            for question in questions[:SINGLE_ASKS]:
                start = time.perf_counter()
                client.ask(question, model)
                single.append(time.perf_counter() - start)
            log = Log()
            elapsed = _load(port, model, questions, args, log)
            checks = _verify(client, model, log)
        finally:
            process.send_signal(signal.SIGTERM)
            output = process.communicate(timeout=300)[0]
    results = {
        "backend": args.backend or "recipe",
        "clients": args.clients,
        "editors": args.editors,
        "seconds": elapsed,
        "answer_tokens": ANSWER_TOKENS,
        "cpu_count": os.cpu_count(),
        "single_ask": latency_ms(single),
        "loaded_ask": latency_ms(log.asks),
        "loaded_edit": latency_ms(log.edits),
        "asks_per_s": len(log.asks) / elapsed,
        "edits_per_s": len(log.edits) / elapsed,
        "errors": len(log.errors),
        "error_samples": log.errors[:5],
        "server_exit": process.returncode,
        "server_log_tail": output[-1000:],
    } | checks
    results["p99_over_single"] = results["loaded_ask"]["p99_ms"] / results["single_ask"]["p50_ms"]
    _write(results, single, log, Path(args.out))
    return 0 if results["errors"] == 0 and checks["missing"] == 0 else 1


def _write(results: dict[str, Any], single: list[float], log: Log, out: Path) -> None:
    from recall.plotting import pyplot

    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"bench-serve-{time.strftime('%Y%m%d-%H%M%S')}"
    Path(f"{stem}.json").write_text(json.dumps(results, indent=2))
    r = results
    rows = [("one client asking", r["single_ask"]), (f"{r['clients']} clients asking", r["loaded_ask"])]
    rows.append((f"{r['editors']} clients editing", r["loaded_edit"]))
    lines = [
        f"recall bench serve: {r['backend']}, {r['clients']} asking + {r['editors']} editing clients for "
        f"{r['seconds']:.0f} s, {r['answer_tokens']}-token answers, {r['cpu_count']} CPUs",
        "",
        "| requests | n | p50 ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {v['n']} | {v['p50_ms']:.0f} | {v['p99_ms']:.0f} | {v['mean_ms']:.0f} |"
            for name, v in rows
        ),
        "",
        f"throughput: {r['asks_per_s']:.2f} answers/s, {r['edits_per_s']:.2f} edits/s; "
        f"errors: {r['errors']}; loaded p99 / single p50: {r['p99_over_single']:.1f}x",
        f"after the load: {r['acknowledged']} acknowledged edits, {r['missing']} missing from the list, "
        f"{r['not_admitted']} not admitted for their own question; {r['answers_with_target']} of "
        f"{r['answers_checked']} checked answers gave the edit's target; server exit {r['server_exit']}",
    ]
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")
    figure, axis = plt.subplots(figsize=(7, 4))
    for name, values in (
        ("one client asking", single),
        ("loaded: asking", log.asks),
        ("loaded: editing", log.edits),
    ):
        if values:
            ms = np.sort(np.asarray(values) * 1000.0)
            axis.plot(ms, np.arange(1, len(ms) + 1) / len(ms), label=f"{name} (n={len(ms)})")
    axis.set_xscale("log")
    axis.set_xlabel("latency (ms, log scale)")
    axis.set_ylabel("share of requests")
    axis.set_title(lines[0].removeprefix("recall bench serve: "), fontsize=8)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(f"{stem}.png", dpi=120)
    plt.close(figure)
    print("\n".join(lines))
    print(f"\nwritten: {stem}.json, .md and .png")

"""`recall serve`: one memory behind an OpenAI-compatible HTTP server (recall/serve/), the model loaded
once."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import socket
from pathlib import Path

from recall.errors import ConfigError
from recall.paths import default_memory_dir

SERVE_DESCRIPTION = """\
Serves one memory over HTTP, the model loaded once:
- OpenAI-compatible: GET /v1/models, POST /v1/chat/completions and /v1/completions (whole or streamed
  with "stream": true). Any OpenAI client works unchanged; the question is the last user message.
  recall's options ride in the request's extra body, e.g. {"recall": {"namespace": "acme",
  "use_memory": false}}, and every answer carries a "recall" object: the edits that shaped it, their
  scores, the gate's threshold. Decoding is greedy (temperature and top_p have no effect).
- Memory: POST /v1/memory/edits ({"prompt", "target"} or {"edits": [...]}), GET /v1/memory/edits,
  GET|DELETE /v1/memory/edits/ID, GET /v1/memory/edits/ID/history, POST /v1/memory/edits/ID/restore,
  GET /v1/memory/conflicts, POST /v1/memory/retrieve, GET /v1/memory/namespaces. An edit is used by
  the next request once its POST returns; a failed request changes nothing.
- GET /health, GET /metrics (Prometheus text).
API keys (--keys FILE, or $RECALL_API_KEYS="KEY=ns1,ns2;KEY2=ns3") map to namespaces: a key reads and
writes only its own, the first being its default. Without keys every caller may use every namespace,
so the server binds to loopback only. Answers run on one thread and edits on another, so an edit never
waits behind a long answer (an in-model backend's edit waits for the answer in progress). Ctrl-C or
SIGTERM finishes the requests in flight, then closes the memory: no acknowledged edit is lost.
"""

SERVE_EPILOG = """\
examples:
  recall serve --memory ~/facts                      # http://127.0.0.1:8000/v1
  RECALL_API_KEYS="sk-acme-0123456789abcdef=acme" recall serve --memory ~/facts --host 0.0.0.0

  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
  client.chat.completions.create(model="smollm2-135m",
      messages=[{"role": "user", "content": "Who is the CEO of Acme?"}], extra_body={"recall": {}})

  curl -s localhost:8000/v1/memory/edits -d '{"prompt": "Who is the CEO of Acme?", "target": "Jane Doe"}'
"""


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    from recall.config.options import add_backend_argument

    parser.add_argument(
        "--memory",
        type=Path,
        default=None,
        metavar="DIR",
        help="memory directory "
        "(default: the persistent user memory; a new one is created when DIR holds none)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--keys",
        type=Path,
        default=None,
        metavar="FILE",
        help="API keys: YAML or JSON {keys: {KEY: [namespace, ...]}} (default: $RECALL_API_KEYS)",
    )
    parser.add_argument("--model", default=None, help="a new memory's model (default: smollm2-135m)")
    parser.add_argument(
        "--max-waiting",
        type=int,
        default=64,
        metavar="N",
        help="answers queued or running at most; more are refused with 503 (default: 64)",
    )
    parser.add_argument(
        "--generator",
        choices=("local", "openai", "vllm"),
        default="local",
        help="where answers are generated: in this process (default), on an OpenAI-compatible "
        "engine's /v1/completions (text prompts: lte backends), or on vLLM (token ids, and "
        "prompt_embeds for recipe's continuous prompts)",
    )
    parser.add_argument(
        "--engine-url",
        default=None,
        metavar="URL",
        help="the engine's base URL, e.g. http://127.0.0.1:8001/v1",
    )
    parser.add_argument(
        "--engine-model",
        default=None,
        metavar="NAME",
        help="the engine's name for the model (default: the one `GET URL/models` lists first)",
    )
    add_backend_argument(parser, "a new memory's backend (default: recipe)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_free(host: str, port: int) -> None:
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port"
        ) from None


def run_serve(args: argparse.Namespace) -> int:
    from recall.serve.tenants import Tenants  # light: the checks below fail before torch loads

    tenants = Tenants.load(args.keys)
    if tenants.open and not _loopback(args.host):
        raise ConfigError(
            f"no API key is configured, so every caller could read and change every namespace: refusing to "
            f"bind {args.host!r}; give --keys FILE or $RECALL_API_KEYS, or serve on 127.0.0.1"
        )
    if args.max_waiting < 1:
        raise ConfigError(f"--max-waiting expected 1 or more, received {args.max_waiting}")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port expected 1-65535, received {args.port}")
    _check_free(args.host, args.port)  # before the model loads: a taken port fails at once
    import uvicorn

    from recall.memory import EditMemory
    from recall.serve.app import create_app
    from recall.serve.engines import connect_engine
    from recall.serve.service import MemoryService

    path = args.memory or default_memory_dir()
    created = "" if (path / "manifest.json").is_file() else "new memory "  # a typo in DIR shows here
    memory = EditMemory.open_or_create(path, model=args.model, backend=args.backend, device=args.device)
    if args.generator != "local":
        try:
            memory.lm.engine = connect_engine(memory, args.generator, args.engine_url, args.engine_model)
        except BaseException:
            memory.close()
            raise
    service = MemoryService(memory, max_waiting=args.max_waiting)
    where = (
        "this process" if memory.lm.engine is None else f"the {args.generator} engine at {args.engine_url}"
    )
    access = (
        "no API key: loopback only, every namespace open" if tenants.open else f"{len(tenants)} API key(s)"
    )
    print(
        f"recall serve: {created}{path} ({memory.backend.name} backend, {memory.lm.model_id}, "
        f"{memory.count()} active edits, generating in {where}) on http://{args.host}:{args.port}/v1; "
        f"{access}",
        flush=True,
    )
    config = uvicorn.Config(
        create_app(service, tenants),
        host=args.host,
        port=args.port,
        log_level="info" if logging.getLogger().level <= logging.INFO else "warning",
        timeout_graceful_shutdown=60,
    )
    # uvicorn shuts down gracefully on SIGTERM, then raises it again: this handler makes that last step
    # a clean exit (status 0, after the message below) instead of a kill.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.Server(config).run()
    finally:
        service.close()  # the app's shutdown closed it already, unless the server never started
    print(f"recall serve: stopped; the memory at {path} is closed, every acknowledged edit in it", flush=True)
    return 0

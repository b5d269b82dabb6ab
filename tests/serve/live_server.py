"""A recall server running in this process on a free loopback port (uvicorn in a thread), and a small
JSON-over-HTTP client for the memory endpoints (the stdlib's urllib: what any script would use)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import uvicorn

from recall.memory import EditMemory
from recall.serve.app import create_app
from recall.serve.service import MemoryService
from recall.serve.tenants import Tenants


class LiveServer:
    def __init__(self, memory: EditMemory, tenants: Tenants | None = None) -> None:
        self.service = MemoryService(memory)
        self.app = create_app(self.service, tenants or Tenants({}))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        """What SIGTERM does to `recall serve`: stop taking requests, finish those in flight, close."""
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.sock.close()

    def call(self, method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
        """(status, decoded JSON body) of one request to `path` (after /v1, or absolute from /)."""
        url = f"http://127.0.0.1:{self.port}{path}" if path.startswith("/") else f"{self.base_url}/{path}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        text = raw.decode()
        try:
            return status, json.loads(text)
        except json.JSONDecodeError:
            return status, text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_process(command: list[str], port: int, seconds: float) -> subprocess.Popen[str]:
    """Run `command` (a server on `port`) until its GET /health answers 200; fail with its output if it
    exits or `seconds` pass first."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"{command[0]} did not start: {process.communicate()[0][-2000:]}"
                ) from None
            time.sleep(0.5)

"""Interactive shell over EditMemory: ask, edit, inspect (:why, :diff, :history, :list, :conflicts) and
undo (:forget, :restore)."""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from recall.backends import Capability, get_backend, registered_backends
from recall.display import fact, one_line
from recall.errors import RecallError, StoreError
from recall.interface import MemoryInterface
from recall.repl.commands import (
    ALL_NAMESPACES,
    Command,
    LineReader,
    Output,
    flat,
    help_lines,
    parse_line,
    short_id,
)
from recall.repl.views import show_conflicts, show_history, show_why, when

if TYPE_CHECKING:
    from recall.results import Answer, EditResult

log = logging.getLogger(__name__)


OpenMemory = Callable[[Path, "str | None", "str | None"], MemoryInterface]


def describe_error(exc: BaseException) -> str:
    """One line for an exception (KeyError's repr-quoting undone)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return flat(str(message)) or type(exc).__name__


def answer_marker(answer: Answer) -> str:
    """'[edit 3f2a9c1e]' (or '[edits a, b]') when the answer used edits, else ''."""
    ids = [short_id(edit_id) for edit_id in answer.used]
    if not ids:
        return ""
    return f"[edit {ids[0]}]" if len(ids) == 1 else f"[edits {', '.join(ids)}]"


def _no_reader(prompt: str) -> str:
    raise EOFError


class Repl:
    """One REPL session: the memory, the current namespace, the last answer and where output goes."""

    def __init__(
        self,
        memory: MemoryInterface,
        out: Output,
        *,
        namespace: str = "default",
        read_line: LineReader = _no_reader,
        read_field: LineReader | None = None,
        interactive: bool = False,
    ) -> None:
        self.memory = memory
        self.out = out
        self.namespace = namespace
        self.last_answer: Answer | None = None
        self.last_latency_s: float | None = None
        self.interactive = interactive
        self.read_line = read_line
        self.read_field = read_field or read_line
        self._handlers: dict[str, Callable[[Command], None]] = {
            "ask": self._ask,
            "edit": self._edit,
            "edit_form": self._edit_form,
            "forget": self._forget,
            "restore": self._restore,
            "list": self._list,
            "conflicts": self._conflicts,
            "history": self._history,
            "why": self._why,
            "diff": self._diff,
            "ns": self._ns,
            "backend": self._backend,
            "stats": self._stats,
            "help": self._help,
        }

    @property
    def prompt(self) -> str:
        return f"recall[{self.namespace}]> "

    def run(self) -> int:
        """Read and handle lines until :quit or end of input; Ctrl-C at the prompt clears the line."""
        while True:
            try:
                line = self.read_line(self.prompt)
            except KeyboardInterrupt:
                continue
            except EOFError:
                break
            if not self.handle_line(line):
                break
        if self.interactive:
            self.out.note("bye")
        return 0

    def handle_line(self, line: str) -> bool:
        """Handle one line; False once the user asked to quit. Never raises (Ctrl-C cancels the command)."""
        command = parse_line(line)
        if command.kind == "quit":
            return False
        if command.kind == "invalid":
            self.out.error(command.hint)
            return True
        handler = self._handlers.get(command.kind)
        if handler is None:
            return True
        try:
            handler(command)
        except KeyboardInterrupt:
            self.out.note("(cancelled)")
        except (RecallError, StoreError, ValueError) as exc:
            self.out.error(f"error: {describe_error(exc)}")
        except Exception as exc:
            log.debug("internal error handling %r", line, exc_info=True)
            self.out.error(f"internal error: {type(exc).__name__}: {describe_error(exc)}")
        return True

    # completion sources (prompt_toolkit calls these from its own thread; they never raise)
    def known_edits(self) -> builtins.list[tuple[str, str, bool]]:
        """(edit_id, prompt, active) of every edit, for id completion."""
        try:
            return [
                (r.edit_id, r.prompt, r.status == "active")
                for r in self.memory.list(namespace=None, status=None)
            ]
        except (RecallError, StoreError, ValueError):
            return []

    def namespace_names(self) -> builtins.list[str]:
        try:
            return sorted({*self.memory.namespaces(), self.namespace})
        except (RecallError, StoreError, ValueError):
            return [self.namespace]

    def _ask_once(self, query: str, *, use_memory: bool = True) -> Answer:
        started = time.perf_counter()
        answer = self.memory.ask(query, namespace=self.namespace, use_memory=use_memory)
        self.last_latency_s = answer.latency_s or (time.perf_counter() - started)
        return answer

    def _ask(self, command: Command) -> None:
        answer = self._ask_once(command.text)
        self.last_answer = answer
        self.out.answer(answer.text.strip(), answer_marker(answer))

    def _add(self, prompt: str, target: str, subject: str | None = None) -> None:
        try:
            result = self.memory.add(prompt, target, subject=subject, namespace=self.namespace)
        except KeyboardInterrupt:
            self.out.note("(interrupted: run :list to see whether the edit was stored)")
            return
        where = "" if self.namespace == "default" else f"  (namespace {self.namespace})"
        self.out.line(f"added {short_id(result.edit_id)}  {fact(result.record)}{where}")
        for old in result.superseded:
            self.out.note(f"  supersedes {short_id(old.edit_id)}  {fact(old)} (:restore brings it back)")
        self._neighbours(result)

    def _neighbours(self, result: EditResult) -> None:
        for other in result.conflicts:
            self.out.note(f"  conflicts with {short_id(other.edit_id)}  {fact(other)} (both kept)")
        for hit in result.similar:
            record = hit.record
            self.out.note(
                f"  similar to {short_id(record.edit_id)}  {fact(record)} ({hit.score:.2f}, both kept)"
            )

    def _edit(self, command: Command) -> None:
        self._add(command.text, command.target)

    def _edit_form(self, command: Command) -> None:
        backend = str(self.memory.info()["backend"])
        needs = backend in registered_backends() and Capability.SUBJECT in get_backend(backend).capabilities
        if self.interactive:
            self.out.note("guided edit: one field a line; a blank prompt or Ctrl-C cancels")
        try:
            prompt = self.read_field("prompt> ").strip()
            target = self.read_field("target> ").strip() if prompt else ""
            label = (
                "subject (required: the entity, as written in the prompt)> "
                if needs
                else "subject (optional)> "
            )
            subject = self.read_field(label).strip() if target else ""
        except (EOFError, KeyboardInterrupt):
            prompt = target = ""
        if not (prompt and target):
            self.out.note("edit cancelled: a prompt and a target are both needed")
            return
        if needs and not subject:
            self.out.note(f"edit cancelled: the {backend} backend needs the subject the fact is about")
            return
        self._add(prompt, target, subject or None)

    def _forget(self, command: Command) -> None:
        record = self.memory.find(command.text, self.namespace)
        if record.status == "retracted":
            self.out.error(f"edit {short_id(record.edit_id)} is already forgotten")
            return
        self.memory.forget(record.edit_id)
        self.out.line(f"forgot {short_id(record.edit_id)}  {fact(record)}")

    def _restore(self, command: Command) -> None:
        record = self.memory.find(command.text, self.namespace)
        if record.status == "active":
            self.out.error(f"edit {short_id(record.edit_id)} is active: nothing to restore")
            return
        result = self.memory.restore(record.edit_id)
        self.out.line(f"restored {short_id(result.edit_id)}  {fact(result.record)}")
        self._neighbours(result)

    def _list(self, command: Command) -> None:
        namespace = None if command.text == ALL_NAMESPACES else (command.text or self.namespace)
        records = self.memory.list(namespace=namespace, status="active")
        scope = "all namespaces" if namespace is None else f"namespace {namespace}"
        if not records:
            self.out.note(f"no active edits in {scope}")
            return
        rows = [
            [short_id(r.edit_id), r.namespace, one_line(r.prompt), one_line(r.target), when(r.created_at)]
            for r in sorted(records, key=lambda r: r.created_at)
        ]
        title = f"{len(records)} active edit{'s' * (len(records) != 1)} in {scope}"
        self.out.table(["id", "namespace", "prompt", "target", "created"], rows, title=title)

    def _conflicts(self, command: Command) -> None:
        namespace = None if command.text == ALL_NAMESPACES else (command.text or self.namespace)
        scope = "all namespaces" if namespace is None else f"namespace {namespace}"
        show_conflicts(self.out, self.memory.conflicts(namespace), scope)

    def _history(self, command: Command) -> None:
        show_history(self.out, self.memory, self.memory.find(command.text, self.namespace))

    def _why(self, command: Command) -> None:
        if self.last_answer is None:
            self.out.note("nothing to explain yet: ask a question first")
            return
        show_why(self.out, self.last_answer, self.memory.sentinel_name)

    def _diff(self, command: Command) -> None:
        with_memory = self._ask_once(command.text)
        without = self._ask_once(command.text, use_memory=False)
        self.last_answer = with_memory
        marker = answer_marker(with_memory) or "(no edit used)"
        texts = [with_memory.text.strip(), without.text.strip()]
        if self.out.is_rich:
            self.out.table([f"with memory {marker}", "without memory"], [texts])
        else:
            self.out.pairs(
                [("with memory", f"{flat(texts[0])}  {marker}"), ("without memory", flat(texts[1]))]
            )

    def _ns(self, command: Command) -> None:
        if command.text:
            self.namespace = command.text
            self.out.line(f"namespace {self.namespace} ({self.memory.count(self.namespace)} active edits)")
            return
        others = ", ".join(self.namespace_names())
        self.out.line(f"namespace {self.namespace}; namespaces: {others}")

    def _backend(self, command: Command) -> None:
        info = self.memory.info()
        rows = [
            ("backend", str(info.get("backend", "?"))),
            ("sentinel", self.memory.sentinel_name),
            ("model", str(info.get("model", "?"))),
        ]
        registered = _registered_backends()
        if registered:
            rows.append(("available", f"{', '.join(registered)} (start with: recall repl --backend NAME)"))
        self.out.pairs(rows)

    def _stats(self, command: Command) -> None:
        info = self.memory.info()
        latency = "-" if self.last_latency_s is None else f"{self.last_latency_s * 1000:.0f} ms"
        edits = f"{self.memory.count(None)} active ({self.memory.count(self.namespace)} in {self.namespace})"
        self.out.pairs(
            [
                ("memory", str(info.get("path", "?"))),
                ("edits", edits),
                ("namespaces", ", ".join(self.namespace_names())),
                ("model", str(info.get("model", "?"))),
                ("encoder", str(info.get("encoder", "?"))),
                ("backend", f"{info.get('backend', '?')} (sentinel {self.memory.sentinel_name})"),
                ("last answer", latency),
            ]
        )

    def _help(self, command: Command) -> None:
        if not command.text:
            self.out.line("Type a question to ask it, or a command:")
        self.out.pairs(help_lines(command.text))
        if not command.text:
            self.out.note("Ids: 4+ hex characters of an edit id. Lines starting with '#' are ignored.")


def _registered_backends() -> builtins.list[str]:
    """Registered backends and the presets in configs/backend (lte_aligned), for :backend."""
    try:
        from recall.backends import registered_backends
        from recall.config import preset_names
    except ImportError:
        return []
    return sorted({str(name) for name in registered_backends()} | set(preset_names()))

"""One EditMemory behind a server: answers on a dedicated generation thread, edits on a dedicated writer
thread, reads (list, get, history, conflicts) on the event loop's pool, so an edit never waits behind a
long answer.

Whole (non-streamed) answers that wait together are decoded together: the answer thread takes every
question waiting when it comes free (up to MAX_BATCH) and asks them in one `ask_many` per namespace, so
twenty clients pay for about one batched answer each round instead of twenty answers one after another.
A question whose request was cancelled before its turn is not answered. Streamed answers go one by one.

The store is thread-safe (memory_store/store.py) and EditWriter serializes writes. A retrieval backend
reads an edit only after the store holds it, so its answers and edits run side by side. An in-model
backend (GRACE, ROME, MEMIT, ...) changes the weights or modules an answer runs through: there an edit
waits for the answer in progress, and answers wait for the edit (a readers-writer lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from memory_store.locks import ReadWriteLock
from recall.memory import EditMemory
from recall.results import Answer
from recall.serve.errors import ApiError
from recall.serve.metrics import Metrics

T = TypeVar("T")
# Whole answers decoded together at most: the decoding batch of the backends (recall/lm/decoding.py).
MAX_BATCH = 16


class StreamClosedError(Exception):
    """Raised inside a streamed generation whose client has gone: it ends the decoding loop early."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer with what the OpenAI response reports about it."""

    answer: Answer
    prompt_tokens: int  # the question's tokens (edits injected by the backend are not counted)
    completion_tokens: int
    finish_reason: str  # "length": the answer used its whole budget; "stop": it ended on its own


@dataclass(slots=True)
class QueuedQuestion:
    """A whole answer waiting for the answer thread; `reply` is settled there."""

    text: str
    namespace: str
    max_new_tokens: int | None
    use_memory: bool
    reply: Future[Reply] = field(default_factory=Future)


def service_of(app_state: object) -> MemoryService:
    """The MemoryService create_app (recall/serve/app.py) put on the application's state."""
    service = getattr(app_state, "service", None)
    if not isinstance(service, MemoryService):
        raise RuntimeError("the application holds no MemoryService: build it with create_app")
    return service


class MemoryService:
    def __init__(self, memory: EditMemory, metrics: Metrics | None = None, max_waiting: int = 64) -> None:
        self.memory = memory
        self.metrics = metrics or Metrics()
        # Answers queued or running at most; past it a request is refused at once (503) rather than
        # waiting minutes: the client retries, or the operator adds servers.
        self.max_waiting, self._waiting = max_waiting, 0
        self._answering = ThreadPoolExecutor(1, thread_name_prefix="recall-answer")
        self._writing = ThreadPoolExecutor(1, thread_name_prefix="recall-edit")
        self._model_lock = ReadWriteLock() if memory.backend.capabilities.in_model else None
        self._waiting_questions: list[QueuedQuestion] = []
        self._questions_lock = threading.Lock()
        self.closed = False

    @property
    def model_name(self) -> str:
        return self.memory.lm.model_id

    @contextlib.contextmanager
    def _model(self, writing: bool) -> Iterator[None]:
        if self._model_lock is None:
            yield
            return
        with self._model_lock.write() if writing else self._model_lock.read():
            yield

    # ----------------------------------------------------------------- answers
    def _answer(
        self,
        question: str,
        namespace: str,
        max_new_tokens: int | None,
        use_memory: bool,
        on_text: Callable[[str], None] | None,
    ) -> Reply:
        with self._model(writing=False):
            answer = self.memory.ask(
                question, namespace, max_new_tokens=max_new_tokens, use_memory=use_memory, on_text=on_text
            )
        return self._reply(question, answer, max_new_tokens)

    def _reply(self, question: str, answer: Answer, max_new_tokens: int | None) -> Reply:
        tokens = self.memory.lm.tokenizer
        completion = len(tokens(answer.text, add_special_tokens=False).input_ids)
        budget = self.memory.check.answer_length(
            answer.retrieval.query, max_new_tokens, answer.retrieval.admitted
        )
        prompt = len(tokens(question, add_special_tokens=False).input_ids)
        self.metrics.answer(answer.used_memory)
        return Reply(answer, prompt, completion, "length" if completion >= budget else "stop")

    def _answer_waiting(self) -> None:
        """On the answer thread: the whole answers waiting now (MAX_BATCH at most), one ask_many per
        namespace and memory switch. A question whose request was cancelled is skipped."""
        with self._questions_lock:
            taken = self._waiting_questions[:MAX_BATCH]
            del self._waiting_questions[:MAX_BATCH]
        groups: dict[tuple[str, bool], list[QueuedQuestion]] = {}
        for question in taken:
            if question.reply.set_running_or_notify_cancel():  # False: cancelled, the client left
                groups.setdefault((question.namespace, question.use_memory), []).append(question)
        for (namespace, use_memory), group in groups.items():
            try:
                with self._model(writing=False):
                    answers = self.memory.ask_many(
                        [q.text for q in group],
                        namespace,
                        max_new_tokens=[q.max_new_tokens for q in group],
                        use_memory=use_memory,
                    )
            except Exception as error:
                if len(group) == 1:
                    group[0].reply.set_exception(error)
                else:  # one bad question must not fail the others: each alone
                    for q in group:
                        _settle(q, self._answer, q.text, namespace, q.max_new_tokens, use_memory, None)
                continue
            for q, answer in zip(group, answers, strict=True):
                _settle(q, self._reply, q.text, answer, q.max_new_tokens)

    def check_room(self) -> None:
        """503 when max_waiting answers are queued or running (the event loop is one thread: the count
        needs no lock). Called before a response starts, so a stream is refused with a status."""
        if self._waiting >= self.max_waiting:
            message = f"{self._waiting} answers are waiting already; retry later"
            raise ApiError(503, "overloaded_error", message)

    @contextlib.contextmanager
    def _queued(self) -> Iterator[None]:
        """A place in the answer queue."""
        self.check_room()
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1

    async def answer(
        self, question: str, namespace: str, max_new_tokens: int | None, use_memory: bool
    ) -> Reply:
        waiting = QueuedQuestion(question, namespace, max_new_tokens, use_memory)
        with self._queued():
            with self._questions_lock:
                self._waiting_questions.append(waiting)
            # one turn of the answer thread per question: a turn finds its question taken by an earlier
            # turn, or takes it with every other question waiting
            self._answering.submit(self._answer_waiting)
            return await asyncio.wrap_future(waiting.reply)

    async def stream(
        self, question: str, namespace: str, max_new_tokens: int | None, use_memory: bool
    ) -> AsyncIterator[str | Reply]:
        """The answer's text pieces as the model writes them, then the Reply."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str] = asyncio.Queue()

        gone = threading.Event()  # the client left: the generation stops at its next token

        def on_text(piece: str) -> None:
            if gone.is_set():
                raise StreamClosedError("the client closed the stream")
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        with self._queued():
            job = loop.run_in_executor(
                self._answering, self._answer, question, namespace, max_new_tokens, use_memory, on_text
            )
            try:
                async for item in self._pieces(pieces, job):
                    yield item
            finally:
                if not job.done():  # closed or cancelled before the answer ended
                    gone.set()
                    job.add_done_callback(lambda done: done.exception())  # the abandonment is expected

    @staticmethod
    async def _pieces(pieces: asyncio.Queue[str], job: asyncio.Future[Reply]) -> AsyncIterator[str | Reply]:
        while True:
            waiter = asyncio.ensure_future(pieces.get())
            either: set[asyncio.Future[Any]] = {waiter, job}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                yield waiter.result()
                continue
            waiter.cancel()
            while not pieces.empty():  # pieces queued before the job finished
                yield pieces.get_nowait()
            yield await job  # raises what the answer raised
            return

    # ----------------------------------------------------------------- edits and reads
    async def write(self, operation: str, call: Callable[[], T], count: Callable[[T], int]) -> T:
        """Run `call` (an add, forget, restore) on the writer thread; counted as `count(result)` edits."""

        def run() -> T:
            with self._model(writing=True):
                return call()

        result = await asyncio.get_running_loop().run_in_executor(self._writing, run)
        self.metrics.edit(operation, count(result))
        return result

    async def read(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, call)

    def close(self) -> None:
        """Finish the answer and the edit in progress (and those queued), then close the memory."""
        if self.closed:
            return
        self.closed = True
        self._writing.shutdown(wait=True)
        self._answering.shutdown(wait=True)
        self.memory.close()


def _settle(question: QueuedQuestion, call: Callable[..., Reply], *args: Any) -> None:
    """Set the question's reply to what call(*args) returns or raises."""
    try:
        question.reply.set_result(call(*args))
    except Exception as raised:
        question.reply.set_exception(raised)

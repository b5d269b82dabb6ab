"""Issue #33: a hypothesis fuzz of EditMemory's public API with hostile input (control, format and
surrogate characters, special tokens, huge sizes, wrong types). Every call returns or raises a typed
recall error (RecallError or StoreError), within a time bound, and the memory stays usable. The slow
suite runs 10,000 calls; the fast one 100, each followed by a question that must still be answered."""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memory_store import StoreError
from recall.config import load_config
from recall.errors import RecallError
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.results import Edit
from recall.retrieval.encoder import HashingEncoder

CALL_BOUND_S = 20.0  # one call on the tiny llama; a 1 MB question once took minutes and all memory
WORDS = ["who", "is", "the", "ceo", "of", "acme", "capital", "france", "paris", "?", "jane", "doe", "1", "2"]
HOSTILE = st.one_of(
    st.lists(st.sampled_from(WORDS), max_size=8).map(" ".join),
    st.text(max_size=40),  # any code point, surrogates and controls included
    st.text(st.characters(categories=["Cc", "Cf", "Cs", "Zl", "Zp"]), min_size=1, max_size=6),
    st.sampled_from(["<s>", "</s>", "<pad>", "<unk>", "who is </s> acme ?", "\u202eacme", "a\ud800b"]),
    st.sampled_from(["x" * 10_001, "who " * 3_000, "x" * 1_000_000]),
)
ODD = st.sampled_from([None, 0, -1, 1.5, True, b"who", [], {}, ("a",), object()])
TEXT = st.one_of(HOSTILE, HOSTILE, HOSTILE, ODD)
NAMESPACE = st.one_of(st.sampled_from(["default", "alice", "DEFAULT", "default ", ""]), TEXT)
POLICY = st.one_of(st.none(), st.sampled_from(["supersede", "reject", "keep_both", "overwrite"]), ODD)
LENGTH = st.one_of(st.none(), st.integers(-2, 40), st.sampled_from([10**9, 300]), ODD)


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory, tiny_lm: LanguageModel) -> Iterator[EditMemory]:
    config = load_config(
        backend="lte", overrides=["encoder.name=hashing", "model.name=tiny", "sentinel.min_cosine=0.5"]
    )
    path: Path = tmp_path_factory.mktemp("fuzz") / "memory"
    with EditMemory.create(path, config, lm=tiny_lm, encoder=HashingEncoder()) as opened:
        opened.add("who is the ceo of acme ?", "jane doe")
        yield opened


def _stored(memory: EditMemory, drawn: object, length: int = 32) -> object:
    """The stored id at place `drawn` (an int), cut to `length`; anything else as drawn."""
    if not isinstance(drawn, int) or isinstance(drawn, bool):
        return drawn
    ids = [r.edit_id for r in memory.list(None, None)] or ["abcd"]
    return ids[drawn % len(ids)][:length]


def _call(draw: Callable[..., Any], memory: EditMemory) -> Callable[[], object]:
    """One public call with drawn arguments."""
    api: Any = memory  # the calls pass wrong types on purpose

    def text() -> object:
        return draw(TEXT)

    def some_id() -> object:
        # A stored id by its place (drawn apart from the memory's state, which hypothesis does not replay).
        return _stored(memory, draw(st.one_of(st.integers(0, 19), TEXT)))

    kind = draw(st.sampled_from(["add", "add_many", "ask", "score", "retrieve", "forget", "restore",
                                 "history", "find", "list", "conflicts", "get"]))  # fmt: skip
    if kind == "add":
        args = (text(), text(), draw(st.one_of(st.none(), TEXT)), draw(NAMESPACE))
        policy = draw(POLICY)
        return lambda: api.add(*args, policy=policy)
    if kind == "add_many":
        items = draw(st.lists(st.one_of(st.builds(Edit, TEXT, TEXT), st.tuples(TEXT, TEXT), ODD), max_size=4))
        policy = draw(POLICY)
        return lambda: api.add_many(items, policy=policy)
    if kind == "ask":
        query, namespace, length, flag = (
            text(),
            draw(NAMESPACE),
            draw(LENGTH),
            draw(st.one_of(st.booleans(), ODD)),
        )
        return lambda: api.ask(query, namespace, max_new_tokens=length, use_memory=flag)
    if kind == "score":
        query, target, namespace = text(), text(), draw(NAMESPACE)
        return lambda: api.score(query, target, namespace)
    if kind == "retrieve":
        query, namespace = text(), draw(NAMESPACE)
        return lambda: api.retrieve(query, namespace)
    if kind in ("forget", "restore", "history", "get"):
        edit_id, namespace = some_id(), draw(st.one_of(st.none(), NAMESPACE))
        return lambda: getattr(api, kind)(edit_id, namespace)
    if kind == "find":
        prefix, namespace = (
            _stored(memory, draw(st.one_of(st.integers(0, 19), TEXT)), 6),
            draw(st.one_of(st.none(), NAMESPACE)),
        )
        return lambda: api.find(prefix, namespace)
    namespace = draw(st.one_of(st.none(), NAMESPACE))
    if kind == "list":
        status = draw(
            st.one_of(st.none(), st.sampled_from(["active", "retracted", "superseded", "gone"]), ODD)
        )
        return lambda: api.list(namespace, status)
    return lambda: api.conflicts(namespace)


def _fuzz(memory: EditMemory, data: st.DataObject) -> None:
    call = _call(data.draw, memory)
    start = time.perf_counter()
    with contextlib.suppress(RecallError, StoreError):  # a typed error, with its message, is fine
        call()
    elapsed = time.perf_counter() - start
    assert elapsed < CALL_BOUND_S, f"a call took {elapsed:.1f} s"


RSS_BOUND_MB = 2048  # the whole fuzz run's peak resident memory (the tiny model needs ~500 MB with torch)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_public_api_raises_only_typed_errors(memory: EditMemory, data: st.DataObject) -> None:
    _fuzz(memory, data)
    assert memory.ask("who is the ceo of acme ?", max_new_tokens=2).text is not None  # still usable
    assert _peak_mb() < RSS_BOUND_MB


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(data=st.data())
def test_public_api_raises_only_typed_errors_10k(memory: EditMemory, data: st.DataObject) -> None:
    _fuzz(memory, data)
    assert _peak_mb() < RSS_BOUND_MB
    assert os.path.isdir(memory.store.path)

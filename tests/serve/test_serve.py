"""recall serve on the tiny llama, driven by the real `openai` client and plain HTTP on a loopback port:
answers with and without edits, streaming, the `recall` object, edits and forgets taking effect on the
next request, tenants, errors, health, metrics, concurrency and shutdown."""

from __future__ import annotations

import threading
import time
from typing import Any

import openai
import pytest
from conftest import StartServer
from live_server import LiveServer

from recall.errors import InvalidQueryError
from recall.memory import EditMemory
from recall.serve.openai_routes import StopCut
from recall.serve.service import QueuedQuestion
from recall.serve.tenants import Tenants

QUESTION = "who is the ceo of acme ?"
KEY_A, KEY_B = "sk-acme-0123456789abcdef", "sk-globex-0123456789abcd"


def client(server: LiveServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=60)


def chat(server: LiveServer, question: str = QUESTION, key: str = "unused", **extra: Any) -> Any:
    return client(server, key).chat.completions.create(
        model=server.service.model_name,
        messages=[{"role": "user", "content": question}],
        max_tokens=6,
        extra_body={"recall": extra} if extra else None,
    )


def recall_of(response: Any) -> dict[str, Any]:
    extra = response.model_extra or {}
    assert "recall" in extra, "every answer carries a recall object"
    return dict(extra["recall"])


def hold_answers(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """(answering, release): every answer sets `answering`, then waits (30 s at most, else it fails) until
    the test sets `release`, then runs as usual."""
    answering, release = threading.Event(), threading.Event()
    for name in ("ask", "ask_many"):  # streamed answers ask, whole ones ask_many
        real = getattr(EditMemory, name)

        def held(self: EditMemory, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            answering.set()
            assert release.wait(30), "the answer was never released (an edit waited behind it?)"
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(EditMemory, name, held)
    return answering, release


def test_models_lists_the_served_model(start_server: StartServer) -> None:
    server = start_server()
    models = client(server).models.list()
    assert [m.id for m in models.data] == [server.service.model_name]


def test_an_edit_is_used_by_the_next_request_and_a_forget_undoes_it(start_server: StartServer) -> None:
    server = start_server()
    memory = server.service.memory
    base = memory.ask(QUESTION, max_new_tokens=6, use_memory=False).text
    before = chat(server)
    assert before.choices[0].message.content == base
    assert recall_of(before)["used"] == []

    status, added = server.call(
        "POST", "memory/edits", {"prompt": "who is the ceo of acme ?", "target": "jane doe"}
    )
    assert status == 201, added
    edit_id = added["data"][0]["edit"]["id"]
    after = chat(server)
    shown = recall_of(after)
    assert [u["id"] for u in shown["used"]] == [edit_id]
    assert shown["used"][0]["target"] == "jane doe"
    assert shown["used"][0]["score"] >= shown["threshold"]
    assert after.choices[0].message.content == memory.ask(QUESTION, max_new_tokens=6).text
    assert after.usage is not None
    assert after.usage.total_tokens == after.usage.prompt_tokens + after.usage.completion_tokens

    status, forgotten = server.call("DELETE", f"memory/edits/{edit_id[:8]}")
    assert status == 200
    assert forgotten["status"] == "retracted"
    again = chat(server)
    assert recall_of(again)["used"] == []
    assert again.choices[0].message.content == base
    status, history = server.call("GET", f"memory/edits/{edit_id}/history")
    assert [e["kind"] for e in history["data"]] == ["add", "retract"]
    status, restored = server.call("POST", f"memory/edits/{edit_id}/restore")
    assert status == 200
    assert restored["edit"]["status"] == "active"
    assert [u["id"] for u in recall_of(chat(server))["used"]] == [edit_id]


def test_use_memory_false_answers_as_the_base_model(start_server: StartServer) -> None:
    server = start_server()
    base = server.service.memory.ask(QUESTION, max_new_tokens=6, use_memory=False).text
    server.call("POST", "memory/edits", {"prompt": QUESTION, "target": "jane doe"})
    response = chat(server, use_memory=False)
    assert response.choices[0].message.content == base
    assert recall_of(response)["used"] == []


def test_a_stream_joins_to_the_whole_answer(start_server: StartServer) -> None:
    server = start_server()
    server.call("POST", "memory/edits", {"prompt": QUESTION, "target": "jane doe"})
    whole = client(server).chat.completions.create(
        model=server.service.model_name, messages=[{"role": "user", "content": QUESTION}], max_tokens=12
    )
    stream = client(server).chat.completions.create(
        model=server.service.model_name,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == whole.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    assert finals[0].choices[0].finish_reason == whole.choices[0].finish_reason
    assert recall_of(finals[0])["used"] == recall_of(whole)["used"]
    streamed_usage, whole_usage = chunks[-1].usage, whole.usage
    assert streamed_usage is not None
    assert whole_usage is not None
    assert streamed_usage.completion_tokens == whole_usage.completion_tokens


def test_completions_endpoint_whole_and_streamed(start_server: StartServer) -> None:
    server = start_server()
    api = client(server)
    whole = api.completions.create(model=server.service.model_name, prompt=QUESTION, max_tokens=5)
    assert whole.choices[0].text == server.service.memory.ask(QUESTION, max_new_tokens=5).text
    assert whole.choices[0].finish_reason in ("stop", "length")
    streamed = api.completions.create(
        model=server.service.model_name, prompt=QUESTION, max_tokens=5, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == whole.choices[0].text


def test_stop_sequences_cut_whole_and_streamed_answers_alike() -> None:
    whole = "jane doe is the ceo"
    for stops in (["is"], ["doe i", "xyz"], ["zzz"], [" the"]):
        expected = whole[: min([i for i in (whole.find(s) for s in stops) if i >= 0], default=len(whole))]
        for size in (1, 2, 5, len(whole)):
            cut = StopCut(stops)
            out = "".join(cut.feed(whole[i : i + size]) for i in range(0, len(whole), size)) + cut.finish()
            assert out == expected, (stops, size)


def test_tenants_see_and_change_only_their_namespaces(start_server: StartServer) -> None:
    server = start_server(tenants=Tenants({KEY_A: ("acme",), KEY_B: ("globex", "shared")}))
    status, added = server.call("POST", "memory/edits", {"prompt": QUESTION, "target": "jane doe"}, key=KEY_A)
    assert status == 201
    assert added["data"][0]["edit"]["namespace"] == "acme"
    edit_id = added["data"][0]["edit"]["id"]

    assert [u["id"] for u in recall_of(chat(server, key=KEY_A))["used"]] == [edit_id]
    assert recall_of(chat(server, key=KEY_B))["used"] == []  # globex has no edit
    assert server.call("GET", "memory/edits", key=KEY_B)[1]["data"] == []
    assert server.call("GET", f"memory/edits/{edit_id}", key=KEY_B)[0] == 404
    assert server.call("DELETE", f"memory/edits/{edit_id}", key=KEY_B)[0] == 404
    assert server.call("GET", "memory/edits?namespace=acme", key=KEY_B)[0] == 403
    assert (
        server.call("POST", "memory/edits", {"prompt": "x", "target": "y", "namespace": "acme"}, key=KEY_B)[0]
        == 403
    )
    with pytest.raises(openai.PermissionDeniedError):
        chat(server, key=KEY_B, namespace="acme")
    with pytest.raises(openai.AuthenticationError):
        chat(server, key="sk-wrong-0123456789abcdef")
    assert server.call("GET", "memory/edits")[0] == 401  # no key at all
    assert server.call("GET", "/health")[0] == 200  # health needs none
    status, listed = server.call("GET", "memory/edits", key=KEY_A)
    assert [r["id"] for r in listed["data"]] == [edit_id]
    assert server.call("GET", "memory/namespaces", key=KEY_B)[1]["data"] == []


def test_bad_input_is_a_4xx_with_a_json_error(start_server: StartServer) -> None:
    server = start_server()
    api, model = client(server), server.service.model_name
    cases: list[tuple[dict[str, Any], type[openai.APIStatusError]]] = [
        ({"messages": []}, openai.BadRequestError),
        ({"messages": [{"role": "user", "content": "who\x00 is"}]}, openai.BadRequestError),
        ({"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 0}, openai.BadRequestError),
        ({"messages": [{"role": "user", "content": QUESTION}], "n": 2}, openai.BadRequestError),
        ({"messages": [{"role": "assistant", "content": QUESTION}]}, openai.BadRequestError),
        ({"messages": [{"role": "user", "content": QUESTION}], "model": "gpt-4o"}, openai.NotFoundError),
        (
            {"messages": [{"role": "user", "content": QUESTION}], "extra_body": {"recall": {"nope": 1}}},
            openai.BadRequestError,
        ),
        (
            {
                "messages": [{"role": "user", "content": QUESTION}],
                "extra_body": {"recall": {"namespace": "Acme"}},
            },
            openai.BadRequestError,
        ),
    ]
    for fields, error in cases:
        with pytest.raises(error) as raised:
            api.chat.completions.create(**({"model": model} | fields))
        body = raised.value.body
        assert isinstance(body, dict), fields
        assert body.get("message"), fields
        assert body.get("type"), fields
        assert "Traceback" not in str(body)
    for body in (
        {"prompt": "who", "target": ""},
        {"prompt": "who", "target": "x\x07"},
        {"prompt": "who"},
        {"edits": []},
        {"prompt": "a", "target": "b", "edits": [{"prompt": "c", "target": "d"}]},
        {"prompt": "a", "target": "b", "policy": "sometimes"},
    ):
        status, answer = server.call("POST", "memory/edits", body)
        assert status == 400, (body, answer)
        assert answer["error"]["type"] == "invalid_request_error"
        assert answer["error"]["message"]
    assert server.call("GET", "memory/edits/abc")[0] == 400  # a prefix under 4 characters
    assert server.call("GET", "memory/edits/abcdef12")[0] == 404
    assert server.call("GET", "nowhere")[1]["error"]["type"] == "not_found_error"


def test_a_failed_batch_changes_nothing(start_server: StartServer) -> None:
    server = start_server()
    batch = {
        "edits": [
            {"prompt": QUESTION, "target": "jane doe"},
            {"prompt": "what is the capital of france ?", "target": ""},
        ]
    }
    status, _ = server.call("POST", "memory/edits", batch)
    assert status == 400
    assert server.call("GET", "memory/edits")[1]["data"] == []
    good = {
        "edits": [
            {"prompt": QUESTION, "target": "jane doe"},
            {"prompt": "what is the capital of france ?", "target": "lyon"},
        ]
    }
    status, added = server.call("POST", "memory/edits", good)
    assert status == 201
    assert len(added["data"]) == 2
    assert len(server.call("GET", "memory/edits")[1]["data"]) == 2


def test_health_and_metrics(start_server: StartServer) -> None:
    server = start_server()
    server.call("POST", "memory/edits", {"prompt": QUESTION, "target": "jane doe"})
    chat(server)
    status, health = server.call("GET", "/health")
    assert status == 200
    assert health["status"] == "ok"
    assert health["active_edits"] == 1
    status, text = server.call("GET", "/metrics")
    assert status == 200
    assert isinstance(text, str)
    assert 'recall_requests_total{route="/v1/chat/completions",status="200"} 1' in text
    assert 'recall_edits_total{operation="add"} 1' in text
    assert "recall_answers_with_edit_total 1" in text
    assert "recall_active_edits 1" in text
    assert 'recall_request_seconds_bucket{route="/v1/chat/completions",le="+Inf"} 1' in text


def test_an_edit_is_not_blocked_behind_an_answer(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer that cannot finish until an edit has been acknowledged: if edits waited behind
    answers, this would never end (the test times out instead)."""
    server = start_server()
    memory = server.service.memory
    answering, edit_done = hold_answers(monkeypatch)
    result: list[Any] = []
    asker = threading.Thread(target=lambda: result.append(chat(server)))
    asker.start()
    assert answering.wait(30)
    status, _ = server.call("POST", "memory/edits", {"prompt": QUESTION, "target": "jane doe"})
    assert status == 201
    edit_done.set()
    asker.join(60)
    assert result
    assert memory.count() == 1
    assert recall_of(result[0])["used"], "the answer, finished after the edit, used it"


def test_whole_answers_waiting_together_are_decoded_together(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five clients ask while the answer thread is busy: when it comes free it answers every waiting
    question in one ask_many per namespace and memory switch, with the answers each would get alone."""
    server = start_server()
    memory = server.service.memory
    server.call("POST", "memory/edits", {"prompt": QUESTION, "target": "jane doe"})
    questions = [QUESTION, "who wrote book 1 ?", "what is the capital of france ?", QUESTION]
    alone = [memory.ask(q, max_new_tokens=6).text for q in questions]
    base = memory.ask(QUESTION, max_new_tokens=6, use_memory=False).text
    batches: list[int] = []
    real_many = EditMemory.ask_many

    def counted(self: EditMemory, queries: Any, *args: Any, **kwargs: Any) -> Any:
        batches.append(len(queries))
        return real_many(self, queries, *args, **kwargs)

    monkeypatch.setattr(EditMemory, "ask_many", counted)
    answering, release = hold_answers(monkeypatch)  # holds the first turn while the others queue
    results: dict[str, Any] = {}

    def ask(name: str, question: str, **extra: Any) -> None:
        try:
            results[name] = chat(server, question, **extra)
        except openai.APIStatusError as error:
            results[name] = error

    first = threading.Thread(target=ask, args=("first", QUESTION))
    first.start()
    assert answering.wait(30)
    askers = [threading.Thread(target=ask, args=(f"q{i}", q)) for i, q in enumerate(questions)]
    askers.append(threading.Thread(target=ask, args=("base", QUESTION), kwargs={"use_memory": False}))
    for asker in askers:
        asker.start()
    deadline = time.monotonic() + 30
    while len(server.service._waiting_questions) < len(askers) and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in [first, *askers]:
        thread.join(60)
    assert [results[f"q{i}"].choices[0].message.content for i in range(len(questions))] == alone
    assert results["base"].choices[0].message.content == base
    assert max(batches) >= len(questions)  # the waiting questions of one namespace and switch together


def test_a_bad_question_among_waiting_ones_fails_alone(start_server: StartServer) -> None:
    """The routes check a question before it waits; should ask_many still refuse one, the others are
    answered one by one and only that one gets the error."""
    service = start_server().service
    good = QueuedQuestion(QUESTION, "default", 6, True)
    bad = QueuedQuestion("who\x00 is", "default", 6, True)
    service._waiting_questions += [good, bad]
    service._answer_waiting()
    assert good.reply.result().answer.text == service.memory.ask(QUESTION, max_new_tokens=6).text
    with pytest.raises(InvalidQueryError):
        bad.reply.result()


def test_shutdown_keeps_every_acknowledged_edit(
    start_server: StartServer, tmp_path: Any, tiny_lm: Any
) -> None:
    server = start_server(folder="durable")
    acknowledged: list[str] = []

    def add(i: int) -> None:
        status, body = server.call(
            "POST", "memory/edits", {"prompt": f"who wrote book {i} ?", "target": "john smith"}
        )
        if status == 201:
            acknowledged.append(body["data"][0]["edit"]["id"])

    writers = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for writer in writers:
        writer.start()
    time.sleep(0.05)
    server.stop()  # while edits may be in flight
    for writer in writers:
        writer.join(60)
    assert server.service.closed
    with EditMemory.open(tmp_path / "durable", lm=tiny_lm) as reopened:
        stored = {r.edit_id for r in reopened.list()}
    assert acknowledged
    assert set(acknowledged) <= stored


def test_a_full_answer_queue_refuses_with_503_and_then_serves_again(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server()
    server.service.max_waiting = 1
    answering, release = hold_answers(monkeypatch)
    first: list[Any] = []
    asker = threading.Thread(target=lambda: first.append(chat(server)))
    asker.start()
    assert answering.wait(30)
    with pytest.raises(openai.InternalServerError) as refused:
        chat(server)
    assert refused.value.status_code == 503
    with pytest.raises(openai.InternalServerError):
        list(
            client(server).chat.completions.create(
                model=server.service.model_name, messages=[{"role": "user", "content": QUESTION}], stream=True
            )
        )
    assert server.call("POST", "memory/edits", {"prompt": QUESTION, "target": "jane doe"})[0] == 201
    release.set()
    asker.join(60)
    assert first
    assert chat(server).choices  # room again


def test_a_closed_stream_stops_its_generation(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that leaves mid-answer frees the generation thread at the next token. The answer here is
    a stand-in for a slow model (300 pieces, 10 ms each) that records when it was stopped."""
    server = start_server()
    emitted, stopped = [0], threading.Event()
    real_ask = EditMemory.ask

    def slow_ask(self: EditMemory, question: str, namespace: str = "default", **options: Any) -> Any:
        on_text = options.pop("on_text", None)
        try:
            for _ in range(300):
                time.sleep(0.01)
                if on_text is not None:
                    on_text("x ")
                    emitted[0] += 1
        except Exception:
            stopped.set()
            raise
        return real_ask(self, question, namespace, **options)

    monkeypatch.setattr(EditMemory, "ask", slow_ask)
    stream = client(server).chat.completions.create(
        model=server.service.model_name, messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    for _, _chunk in zip(range(3), stream, strict=False):
        pass
    stream.close()
    assert stopped.wait(10), "the generation ran on after its client left"
    assert emitted[0] < 300
    assert chat(server).choices  # the generation thread is free again


def test_text_parts_system_turns_and_completions_ask_the_same_question(start_server: StartServer) -> None:
    server = start_server()
    server.call("POST", "memory/edits", {"prompt": QUESTION, "target": "jane doe"})
    api, model = client(server), server.service.model_name
    plain = chat(server)
    parts = api.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "be brief ."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "who is the ceo "},
                    {"type": "text", "text": "of acme ?"},
                ],
            },
        ],
        max_tokens=6,
    )
    assert parts.choices[0].message.content == plain.choices[0].message.content
    assert recall_of(parts)["ignored_messages"] == 1
    assert recall_of(parts)["used"] == recall_of(plain)["used"]
    with pytest.raises(openai.BadRequestError, match="text parts only"):
        api.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}],
        )


def test_an_edit_of_the_same_question_supersedes_or_is_refused_by_policy(start_server: StartServer) -> None:
    server = start_server()
    first = server.call("POST", "memory/edits", {"prompt": QUESTION, "target": "jane doe"})[1]["data"][0]
    status, refused = server.call(
        "POST", "memory/edits", {"prompt": QUESTION, "target": "john smith", "policy": "reject"}
    )
    assert status == 409
    assert refused["error"]["type"] == "conflict_error"
    status, second = server.call("POST", "memory/edits", {"prompt": QUESTION, "target": "john smith"})
    assert status == 201
    assert [r["id"] for r in second["data"][0]["superseded"]] == [first["edit"]["id"]]
    listed = server.call("GET", "memory/edits")[1]["data"]
    assert [r["target"] for r in listed] == ["john smith"]

"""Long targets through memit and alphaedit, chunk by chunk (AnyEdit, METHODS.md §9), on tiny llamas: the
rows of each chunk, no subject needed, every chunk's tokens raised, one journal delta per layer holding
every round, and forget exact as for any batch."""

from __future__ import annotations

import pytest
import torch
from conftest import OpenMemory

from memory_store import EditRecord, InvalidEditError
from recall.backends.memit import MemitBackend, merged
from recall.backends.weight_editor import WeightDelta
from recall.lm.loading import LanguageModel
from recall.memory import EditMemory
from recall.results import Edit

LONG = Edit("who is jane doe ?", "jane doe is the ceo of acme in paris", None)
SHORT = Edit("what is the capital of france ?", "lyon", "france")


def weights(memory: EditMemory) -> dict[str, torch.Tensor]:
    editor = memory.backend
    assert isinstance(editor, MemitBackend)
    return {path: weight.detach().clone() for path, weight in editor.weights.items()}


def test_each_chunk_is_a_job_at_the_token_before_it(open_memory: OpenMemory) -> None:
    memory = open_memory("memit", "memory", long_target_tokens=4, chunk_tokens=4)
    editor = memory.backend
    assert isinstance(editor, MemitBackend)
    record = EditRecord(LONG.prompt, LONG.target)
    prompt, target = editor._item(record.prompt, record.target)
    jobs = editor.jobs(record)
    assert len(jobs) == -(-len(target) // 4) > 2
    for c, (rewrite, kl) in enumerate(jobs):
        window = target[4 * c : 4 * c + 4]
        assert kl == []  # no subject to keep
        assert len(rewrite) == 1 + len(editor.prefixes or [])  # the bare prompt and each prefix
        bare = rewrite[0]
        assert bare.ids == prompt + target[: 4 * c + len(window) - 1]
        assert bare.subject == len(prompt) + 4 * c - 1  # δ and the key: the token before the chunk
        assert bare.target == tuple(window)
        for row in rewrite[1:]:  # after a context prefix: the same text, shifted
            assert row.ids[row.subject + 1 :] == bare.ids[bare.subject + 1 :]
    assert len(editor.jobs(EditRecord(SHORT.prompt, SHORT.target, SHORT.subject))) == 1


@pytest.mark.parametrize("name", ["memit", "alphaedit"])
def test_a_long_target_needs_no_subject_and_every_chunk_is_raised(
    name: str, open_memory: OpenMemory, deep_lm: LanguageModel
) -> None:
    memory = open_memory(name, "deep", lm=deep_lm, layers=(0, 1), long_target_tokens=2, chunk_tokens=2)
    before = memory.score(LONG.prompt, LONG.target, use_memory=False)
    memory.add(LONG.prompt, LONG.target)
    after = memory.score(LONG.prompt, LONG.target)
    chunks = len(before.target_ids) // 2 + 1
    per_chunk = [
        (torch.tensor(after.logprobs[i : i + 2]) - torch.tensor(before.logprobs[i : i + 2])).mean()
        for i in range(0, len(before.target_ids), 2)
    ]
    assert len(per_chunk) == chunks
    assert all(float(gain) > 0 for gain in per_chunk), per_chunk
    # one z for the whole target (plain MEMIT at the last prompt token) raises the later chunks less
    plain = open_memory(name, "plain", lm=deep_lm, layers=(0, 1), long_target_tokens=2, chunk_tokens=None)
    plain.add(LONG.prompt, LONG.target)
    one_z = plain.score(LONG.prompt, LONG.target)
    later = slice(2, None)
    gain_chunked = sum(after.logprobs[later]) - sum(before.logprobs[later])
    gain_one_z = sum(one_z.logprobs[later]) - sum(before.logprobs[later])
    assert gain_chunked > gain_one_z + 1.0, (gain_chunked, gain_one_z)
    # one delta per layer, its rank every job of every round: 1 + 2 + ... + chunks
    (entry,) = memory.backend.journal.values()  # type: ignore[attr-defined]
    change = memory.backend._read(entry.edit_ids[0])  # type: ignore[attr-defined]
    assert change is not None
    assert sorted(d.path for d in change.deltas) == sorted(memory.backend.paths)  # type: ignore[attr-defined]
    assert all(d.right is not None and d.right.shape[0] == chunks * (chunks + 1) // 2 for d in change.deltas)


def test_without_long_edits_a_long_target_needs_a_subject(open_memory: OpenMemory) -> None:
    memory = open_memory("memit", "memory", long_target_tokens=None)
    with pytest.raises(InvalidEditError, match="recall edit --subject"):
        memory.add(LONG.prompt, LONG.target)
    assert memory.list() == []


@pytest.mark.parametrize("name", ["memit", "alphaedit"])
def test_forgetting_a_chunked_edit_of_a_batch_leaves_the_batch_without_it(
    name: str, open_memory: OpenMemory
) -> None:
    memory = open_memory(name, "memory", long_target_tokens=4, chunk_tokens=4)
    ids = [r.edit_id for r in memory.add_many([LONG, SHORT], policy="keep_both")]
    edited = weights(memory)
    memory.forget(ids[0])
    never = open_memory(name, "never", long_target_tokens=4, chunk_tokens=4)
    never.add_many([SHORT], policy="keep_both")
    after, expected = weights(memory), weights(never)
    assert all(torch.equal(after[p], expected[p]) for p in expected)
    assert not all(torch.equal(after[p], edited[p]) for p in expected)


def test_merged_deltas_add_up_to_their_sum() -> None:
    gen = torch.Generator().manual_seed(0)
    parts = [
        WeightDelta("a", torch.randn(5, r, generator=gen), torch.randn(r, 3, generator=gen)) for r in (1, 2)
    ]
    full = WeightDelta("a", torch.randn(5, 3, generator=gen))
    other = WeightDelta("b", torch.randn(5, 1, generator=gen), torch.randn(1, 3, generator=gen))
    (a, b) = merged([parts[0], other, parts[1]])
    assert (a.path, b.path) == ("a", "b")
    assert a.right is not None
    assert a.right.shape == (3, 3)
    assert torch.allclose(a.matrix(), parts[0].matrix() + parts[1].matrix())
    assert b is other
    (c,) = merged([*parts, full])
    assert c.right is None
    assert torch.allclose(c.matrix(), torch.stack([p.matrix() for p in [*parts, full]]).sum(0))


def test_a_weak_long_edit_warns_once_for_all_its_windows(
    open_memory: OpenMemory, caplog: pytest.LogCaptureFixture
) -> None:
    # one optimisation step leaves every window's loss high on the tiny llama
    memory = open_memory("memit", "weak", long_target_tokens=2, chunk_tokens=2, steps=1)
    chunks = -(-len(memory.score(LONG.prompt, LONG.target, use_memory=False).target_ids) // 2)
    with caplog.at_level("WARNING", logger="recall.backends.subject_editor"):
        memory.add(LONG.prompt, LONG.target)
    (warning,) = [r.getMessage() for r in caplog.records if "may not hold" in r.getMessage()]
    assert f"in {chunks} of its {chunks} windows" in warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="recall.backends.subject_editor"):
        memory.add(SHORT.prompt, SHORT.target, SHORT.subject)
    (warning,) = [r.getMessage() for r in caplog.records if "may not hold" in r.getMessage()]
    assert "windows" not in warning

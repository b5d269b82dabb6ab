"""`recall stats` and the second-moment statistics on the tiny llama: C is the mean of k kᵀ over every
corpus token at the projection's input, written once with its token count, condition and digest, and
reported (not recomputed) the second time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recall.cli.main import main
from recall.lm.hooks import forward_hook, layer_path, resolve_module
from recall.lm.loading import LanguageModel
from recall.locate.corpus import CorpusSpec, sample_corpus
from recall.locate.statistics import compute_moments, load_moment


def test_the_moment_is_the_mean_outer_product_of_the_projections_inputs(
    tiny_lm: LanguageModel, tmp_path: Path
) -> None:
    spec = CorpusSpec(samples=3, length=5, batch=2)
    (moment,) = compute_moments(tiny_lm, [1], spec, root=tmp_path, progress=False)
    keys: list[torch.Tensor] = []
    module = resolve_module(tiny_lm.model, layer_path(tiny_lm.model, "mlp_out", 1))
    corpus = list(sample_corpus(tiny_lm, spec))  # the same seed: the same corpus
    with torch.no_grad(), forward_hook(module, lambda _m, inputs, _o: keys.append(inputs[0][0])):
        for seq in corpus:
            tiny_lm.model(input_ids=torch.tensor([seq]))
    k = torch.cat(keys).double()  # (tokens, d_in)
    assert moment.tokens == len(k)
    assert torch.allclose(moment.matrix.double(), k.T @ k / len(k), atol=1e-5)
    again = load_moment(tiny_lm, 1, spec, tmp_path)
    assert again is not None
    assert (again.tokens, again.digest, again.corpus) == (moment.tokens, moment.digest, moment.corpus)
    assert torch.equal(again.matrix, moment.matrix)


def test_recall_stats_computes_once_then_reports(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECALL_CACHE_DIR", str(tmp_path))
    args = ["stats", "--model", str(tiny_model_dir), "--layers", "0,-1", "--samples", "4", "--length", "6"]
    assert main([*args, "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert first.count("computed layer") == 2
    assert "tokens of self-samples-4x6-seed0" in first
    assert "condition" in first
    assert main([*args, "--no-progress"]) == 0
    assert capsys.readouterr().out.count("cached   layer") == 2


@pytest.mark.parametrize(("layers", "message"), [("4", "outside the model's 2 layers"), ("a,b", "integers")])
def test_recall_stats_refuses_bad_layers_in_one_line(
    layers: str, message: str, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats", "--model", str(tiny_model_dir), "--layers", layers]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err

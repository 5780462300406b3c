"""The reward models' scores (reward.py): step ends, a step scored by its weakest token, batching
that changes nothing, and the aggregations, against hand-computed values."""
import pytest
import torch

from common import PRESETS
from data.task import prompt_text
from data.tokenizer import decode, encode
from model import GPT
from reward import aggregate, outcome_scores, step_ends, step_scores
from tests.traces import D_RIGHT, D_WRONG, E_RIGHT, LINE, P, PROBLEM, X_WRONG, trace
from train_prm import oracle_step_labels


def test_step_ends_are_the_step_tokens_and_the_end_of_text_one_label_each():
    for solution in (trace(D_RIGHT, E_RIGHT), trace(D_WRONG, "<|back|>" + D_RIGHT, E_RIGHT), D_RIGHT + "<|step|>e = d"):
        prompt = encode(prompt_text(LINE))
        tokens = prompt + encode(solution)
        ends = step_ends(tokens, len(prompt))
        assert len(ends) == len(oracle_step_labels(PROBLEM, solution, P))
        assert [decode([tokens[i]]) for i in ends] == [piece for piece in ("<|step|>", "<|endoftext|>")
                                                       for _ in range(solution.count(piece))]
    after_the_end = encode(trace(D_RIGHT) + "<|step|><|endoftext|>")
    assert step_ends(after_the_end) == step_ends(encode(trace(D_RIGHT)))


# ----------------------------------------------------------------------------- scoring and measures


def test_aggregations():
    probs = [0.9, 0.5, 0.8]
    assert aggregate(probs, "min") == 0.5
    assert aggregate(probs, "prod") == pytest.approx(0.36)
    assert aggregate(probs, "last") == 0.8
    assert aggregate([], "min") == aggregate([], "prod") == aggregate([], "last") == 0.0
    with pytest.raises(ValueError):
        aggregate(probs, "mean")


def test_scores_do_not_depend_on_what_else_is_in_the_batch():
    torch.manual_seed(0)
    model = GPT(PRESETS["test"].model_config()).eval()
    torch.nn.init.normal_(model.scalar_head.weight)
    prompt = encode(prompt_text(LINE))
    short, long = prompt + encode(trace(D_RIGHT)), prompt + encode(trace(D_RIGHT, X_WRONG, E_RIGHT))
    alone = step_scores(model, [short], [len(prompt)])
    together = step_scores(model, [long, short], [len(prompt)] * 2)
    assert len(together[0]) == 4 and len(alone[0]) == 2
    assert together[1] == pytest.approx(alone[0], abs=1e-6)
    probs = torch.sigmoid(model(torch.tensor([long]), head="scalar"))[0]
    ends = step_ends(long, len(prompt))
    firsts = [len(prompt)] + [e + 1 for e in ends[:-1]]
    assert together[0] == pytest.approx([probs[a:e + 1].min().item() for a, e in zip(firsts, ends)], abs=1e-6)
    assert outcome_scores(model, [long, short])[1] == pytest.approx(
        torch.sigmoid(model(torch.tensor([short]), head="scalar"))[0, -1].item(), abs=1e-6)  # the end-of-text


def test_a_step_scores_the_lowest_of_its_tokens_so_one_bad_token_sinks_it():
    model = GPT(PRESETS["test"].model_config()).eval()
    prompt = encode(prompt_text(LINE))
    tokens = prompt + encode(trace(D_RIGHT, E_RIGHT))
    ends = step_ends(tokens, len(prompt))
    scores = torch.full((1, len(tokens)), 3.0)
    scores[0, ends[0] - 2] = -3.0  # one token inside the first step
    model.forward = lambda x, head="lm": scores[:, :x.shape[1]].expand(x.shape[0], -1)
    (probs,) = step_scores(model, [tokens], [len(prompt)])
    assert probs == pytest.approx([torch.sigmoid(torch.tensor(-3.0)).item()] + [torch.sigmoid(torch.tensor(3.0)).item()] * 2)

"""The reward models' scores: reading a GPT's scalar head.

The process reward model (PRM) and the outcome reward model (ORM) are GPTs whose scalar head
is read on a prompt + solution token sequence: the PRM at every token of a step, where
sigmoid(score) is the probability that the solution is still right there, a step scoring its
weakest token (span_minima); the ORM at the last token, where it is the probability that the
final answer is right. train_prm.py trains both; search.py loads them (load_reward_model) and, with train_rl.py,
scores with these functions.
"""
import math

import torch

from common import UserError, autocast
from data.task import EOT, PAD, STEP
from data.tokenizer import special_id
from model import length_batches, load_checkpoint, model_from_checkpoint


def load_reward_model(path, policy, attn, device):
    """A trained PRM or ORM, ready to score the policy's chains; refused if it reads fewer tokens
    than the policy writes."""
    model = model_from_checkpoint(load_checkpoint(path), attn)
    if model.cfg.block_size < policy.cfg.block_size:
        raise UserError(f"{path} reads {model.cfg.block_size} tokens, the policy writes up to {policy.cfg.block_size}: retrain it")
    return model.to(device).eval()


def step_ends(tokens, start=0):
    """Positions of the step ends in a token sequence, from `start` (the solution's first token):
    every step token, then the end-of-text token, which ends the answer line and so is scored
    as the last step. Nothing after the end-of-text counts. A solution cut off before its
    end-of-text has no answer step."""
    step, eot = special_id(STEP), special_id(EOT)
    ends = []
    for i in range(start, len(tokens)):
        if tokens[i] == step or tokens[i] == eot:
            ends.append(i)
            if tokens[i] == eot:
                break
    return ends


@torch.no_grad()
def scalar_probabilities(model, sequences, batch_size=256):
    """sigmoid(scalar head) at every position of each token sequence: a list of 1-D tensors.
    One forward pass per batch of sequences, right-padded: attention is causal, so the padding
    after a position never changes its score."""
    device, pad = model.wte.weight.device, special_id(PAD)
    was_training = model.training
    model.eval()
    out = [None] * len(sequences)
    for chunk in length_batches(sequences, batch_size):
        x = torch.full((len(chunk), max(len(sequences[i]) for i in chunk)), pad, dtype=torch.long)
        for row, i in enumerate(chunk):
            x[row, :len(sequences[i])] = torch.tensor(sequences[i], dtype=torch.long)
        with autocast(device):
            scores = model(x.to(device), head="scalar")  # (B, T)
        probs = torch.sigmoid(scores.float()).cpu()
        for row, i in enumerate(chunk):
            out[i] = probs[row, :len(sequences[i])]
    model.train(was_training)
    return out


def span_minima(model, sequences, spans, batch_size=256):
    """The PRM's score of each span [start, end) of each sequence: the lowest probability any of
    its tokens gets. The PRM judges every token (is the text still on a right path?), so a step
    is as good as its weakest token: the token where a mistake is made scores low at once, and
    no single position has to re-derive a whole step (results/verifiers/README.md)."""
    probs = scalar_probabilities(model, sequences, batch_size)
    return [[p[a:b].min().item() for a, b in seq_spans] for p, seq_spans in zip(probs, spans)]


def step_spans(ends, start):
    """The token span [first, end] of each step, from the step ends and the solution's start."""
    firsts = [start] + [e + 1 for e in ends[:-1]]
    return [(a, e + 1) for a, e in zip(firsts, ends)]


def step_scores(model, sequences, prompt_lengths, batch_size=256):
    """The PRM's probability that each step is right, for each prompt + solution sequence: a list
    of lists, one float per step (step_ends; the answer step last)."""
    spans = [step_spans(step_ends(s, n), n) for s, n in zip(sequences, prompt_lengths)]
    return span_minima(model, sequences, spans, batch_size)


def outcome_scores(model, sequences, batch_size=256):
    """The ORM's probability that the final answer is right, read at each sequence's last token."""
    return [p[-1].item() for p in scalar_probabilities(model, sequences, batch_size)]


def aggregate(step_probabilities, how):
    """One score for a whole solution from its step scores (probabilities):
      min   the weakest step (Wang et al. 2023, Math-Shepherd)
      prod  the probability that every step is right, steps taken as independent (Lightman et al. 2023)
      last  the last step's score, which already judges the chain before it (Snell et al. 2024)
    A solution with no scored step (cut off before its first step end) scores 0."""
    if not step_probabilities:
        return 0.0
    if how == "min":
        return min(step_probabilities)
    if how == "prod":
        return math.prod(step_probabilities)
    if how == "last":
        return step_probabilities[-1]
    raise ValueError(f"unknown aggregation {how!r}: choose min, prod or last")

"""RL with a perfect process reward: is the PRM's noise what keeps process rewards from helping?

Runs train_rl.py with --reward both, but each step end is rewarded by the exact verifier's label
(first-error rule: 1 while every step so far is right, else 0; the answer line right only if its
chain was), minus 1/2, where train_rl.prm_step_rewards puts the PRM's probability minus 1/2.
Everything else is train_rl.py's. Experiment only; the result is in results/rl/README.md.

    OMP_NUM_THREADS=1 python results/rl/oracle_steps.py --preset tiny --out COPY [train_rl flags]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import train_rl  # noqa: E402
from common import run_cli  # noqa: E402
from data.task import parse_problem  # noqa: E402
from data.tokenizer import decode  # noqa: E402
from reward import step_ends  # noqa: E402
from train_prm import oracle_step_labels  # noqa: E402

_labels = []  # the last rollout's oracle step labels, in the order of its prompts
_rollout = train_rl.rollout


def rollout(policy, records, task, temperature, generator):
    prompts, responses, verdicts = _rollout(policy, records, task, temperature, generator)
    _labels[:] = [oracle_step_labels(parse_problem(r["problem"], task.p), decode(response), task.p)
                  for r, response in zip(records, responses)]
    return prompts, responses, verdicts


def oracle_step_rewards(prm, prompts, responses, T):
    """train_rl.prm_step_rewards with the oracle's label (train_prm.oracle_step_labels) in place of the PRM's probability."""
    rewards = torch.zeros(len(prompts), T)
    for i, (p, r, labels) in enumerate(zip(prompts, responses, _labels)):
        for position, label in zip(step_ends(p + r, len(p)), labels):
            rewards[i, position - 1] = label - 0.5
    return rewards


train_rl.rollout = rollout
train_rl.prm_step_rewards = oracle_step_rewards

if __name__ == "__main__":
    if "--reward" not in sys.argv:
        sys.argv += ["--reward", "both"]
    run_cli(train_rl.main, resumable=True)

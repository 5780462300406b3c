"""Test accuracy along one RL run: does validation pick a good iteration, and is the last one as good?

Runs train_rl.py in OUT (a directory with data/, sft/ and prm/, e.g. links to a pipeline's) in pieces
of eval_every iterations (--resume continues the same run: everything random in an iteration is a
function of (seed, iteration)), and after each piece measures the policy of that iteration on the
test problems of the trained bins, against the SFT policy (95% paired interval), beside validation's
accuracy, whose best picked the checkpoint train_rl.py kept until it kept the last one. With --last, no
training: in runs of that earlier train_rl.py (their checkpoints hold validation's best as the model and
the last policy beside it), the two against the SFT policy. Experiment only; results in results/rl/README.md.

    OMP_NUM_THREADS=1 python results/rl/curve.py OUT SEED [train_rl.py flags]
    OMP_NUM_THREADS=1 python results/rl/curve.py --last OUT [OUT ...]     # OUT: a directory with sft/ and rl/
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import train_rl  # noqa: E402
from common import evaluate_policy, paired_difference, read_split, read_task  # noqa: E402
from model import load_checkpoint, model_from_checkpoint  # noqa: E402


def by_bin(result, records):
    """{d: [0/1 per problem]} from evaluate_policy's outcomes."""
    bins = {}
    for r, right in zip(records, result["outcomes"]["correct"]):
        bins.setdefault(r["difficulty"], []).append(right)
    return bins


def changes(policy, sft, test, task):
    """{d: RL - SFT with its 95% paired interval} on the test problems."""
    now = by_bin(evaluate_policy(policy, test, task, "cpu"), test)
    return {d: paired_difference(now[d], sft[d]) for d in sorted(sft)}


def cells(diffs):
    return " | ".join(f"{m:+.3f} ({lo:+.3f}, {hi:+.3f})" for m, lo, hi in diffs.values())


def trained_test(out):
    task = read_task(out)
    test = [r for r in read_split(out, "test") if r["difficulty"] <= task.max_train_d]
    sft = model_from_checkpoint(load_checkpoint(os.path.join(out, "sft", "ckpt.pt")))
    return task, test, by_bin(evaluate_policy(sft, test, task, "cpu"), test)


def last(*outs):
    print("| run | validation's choice: iteration | d=1 | d=2 | d=3 | the last policy: iteration | d=1 | d=2 | d=3 |")
    print("|---|---:|---|---|---|---:|---|---|---|")
    for out in outs:
        task, test, sft = trained_test(out)
        ckpt = load_checkpoint(os.path.join(out, "rl", "ckpt.pt"))
        chosen, final = model_from_checkpoint(ckpt), model_from_checkpoint(ckpt)
        final.load_state_dict(ckpt["policy"])
        iteration = max(ckpt["val_log"], key=lambda v: v["accuracy"])["iteration"]
        print(f"| {out} | {iteration} | {cells(changes(chosen, sft, test, task))} | {ckpt['val_log'][-1]['iteration']} | "
              f"{cells(changes(final, sft, test, task))} |", flush=True)


def main(out, seed, *flags):
    preset = json.load(open(os.path.join(out, "data", "meta.json")))["preset"]
    argv = ["--preset", preset, "--seed", seed, "--out", out, *flags]
    hp = train_rl.parse_args(argv)
    task, test, sft = trained_test(out)
    shutil.rmtree(os.path.join(out, "rl"), ignore_errors=True)  # a fresh run
    warmup = hp.critic_warmup if hp.algo == "ppo" else 0
    rows = []
    for k in range(hp.eval_every, hp.iterations + 1, hp.eval_every):
        last = k + hp.eval_every > hp.iterations
        train_rl.main(argv + (["--resume"] if k > hp.eval_every else []), stop_after=None if last else warmup + k)
        ckpt = load_checkpoint(os.path.join(out, "rl", "ckpt.pt"))
        policy = model_from_checkpoint(ckpt)  # the iteration's own policy
        rows.append((k, ckpt["val_log"][-1]["accuracy"], changes(policy, sft, test, task)))
    chosen = max(ckpt["val_log"], key=lambda v: v["accuracy"])["iteration"]
    print(f"\nseed {seed}, flags {' '.join(flags) or '(the preset)'}; validation's best: iteration {chosen}")
    print("| iteration | validation accuracy | " + " | ".join(f"d={d}" for d in sorted(sft)) + " |")
    print("|---:|---:|" + "---|" * len(sft))
    for k, val, diffs in rows:
        print(f"| {k}{' (best)' if k == chosen else ''} | {val:.3f} | {cells(diffs)} |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: " + "; ".join(line.strip() for line in __doc__.strip().splitlines()[-2:]))
    last(*sys.argv[2:]) if sys.argv[1] == "--last" else main(*sys.argv[1:])

"""Why the trained PRM fails in range: one controlled PRM training run, scored on the SFT policy's
own samples of test problems against the oracle, beside the policy's confidence (the lowest token
log-probability of any step up to j). Variants change one thing at a time.

    OMP_NUM_THREADS=1 python results/verifiers/diagnose.py DIR NAME [mix=policy|both|flawed]
        [k=1] [problems=2048] [flawed=8192] [steps=200] [lr=1e-3] [muon_lr=0.02] [freeze=0] [dense=0]

Writes results/verifiers/runs/NAME.json.
"""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

import common  # noqa: E402
import reward  # noqa: E402
import train_prm as tp  # noqa: E402
from data.task import EOT, OPS, STEP, Assignment, apply, needed_steps, parse_problem, prompt_text, values  # noqa: E402
from data.tokenizer import encode  # noqa: E402
from data.verify import verify  # noqa: E402
from model import load_checkpoint, model_from_checkpoint  # noqa: E402

EVAL_PER_BIN, EVAL_K = 40, 8


FLAWS = ("result", "operand", "definition", "extra", "skip")


def flawed_solution_text(problem, p, rng):
    """A chain of thought with one mistake of a kind a half-trained policy makes, carried on to
    the answer as the policy would carry it: a wrong result, a wrong operand value, a definition
    copied with the wrong operation, an extra step before a needed one (a distractor, whose
    operands may not be known yet, or a constant rewritten as an operation), or a skipped step (a
    later step, or the answer, then uses a guess for it). Negatives for the reward models at no
    sampling cost (train_prm.py until the finding here); their step labels come from the verifier, not from here."""
    defs, order, true = problem.by_var(), needed_steps(problem), values(problem, p)
    flaw, j = rng.choice(FLAWS if len(order) > 1 else FLAWS[:-1]), rng.randrange(len(order))
    written = {a.var: a.args[0] for a in problem.assignments if a.op is None}  # the values the chain uses
    others = [b for b in problem.assignments if b.var not in order]  # what an extra step can write
    out = []

    def write(a, operand_error=0, result_error=0):
        x, y = (v if isinstance(v, int) else written.get(v, rng.randrange(p)) for v in a.args)  # unknown: a guess
        x = (x + operand_error) % p
        written[a.var] = (apply(a.op, x, y, p) + result_error) % p
        out.append(f"{a.text()} = {x} {a.op} {y} = {written[a.var]}" + STEP)

    for i, var in enumerate(order):
        a, wrong = defs[var], rng.randrange(1, p)
        if i == j and flaw == "skip":
            written[var] = (true[var] + wrong) % p  # never computed: a wrong guess
        elif i == j and flaw == "definition":
            write(Assignment(a.var, rng.choice([op for op in OPS if op != a.op]), a.args))
        else:
            if i == j and flaw == "extra" and others:
                b = rng.choice(others)
                write(b if b.op else Assignment(b.var, rng.choice(OPS), (b.args[0], rng.randrange(p))))
            write(a, operand_error=wrong * (i == j and flaw == "operand"), result_error=wrong * (i == j and flaw == "result"))
    return "".join(out) + f"answer: {written[problem.query]}" + EOT


@torch.no_grad()
def token_logprobs(model, samples):
    """log pi(token) of every solution token under the policy (temperature 1)."""
    out = []
    for s in samples:
        x = torch.tensor([s.tokens])
        lp = torch.log_softmax(model(x).float(), -1)[0, :-1].gather(-1, x[0, 1:, None]).squeeze(-1)
        out.append(lp[len(s.prompt) - 1:].tolist())  # logprob of solution token i
    return out


def confidence_scores(s, lps):
    """step j: the lowest token log-probability of any solution token up to step end j."""
    scores, low = [], 0.0
    for end in s.ends:
        low = min([low] + lps[:end - len(s.prompt) + 1])
        scores.append(low)
    return scores


def step_of_token(s):
    """For each solution token, the index of the step it belongs to (its step end or the next)."""
    out, j = [], 0
    for t in range(len(s.prompt), (s.ends[-1] + 1) if s.ends else len(s.prompt)):
        out.append(j)
        if t == s.ends[j]:
            j += 1
    return out


def dense_example(s, p, exact):
    """Every solution token up to the last step end carries its step's label (exact: its own)."""
    steps = step_of_token(s)
    labels = tp.oracle_token_labels(s, p) if exact else [s.labels[j] for j in steps]
    return s.tokens, list(range(len(s.prompt), len(s.prompt) + len(steps))), labels


def read_steps(prm, s, dense):
    """Step scores: at the step end (the old PRM), or (dense) the lowest over the step's tokens."""
    if not s.ends:
        return []
    if dense:
        return reward.step_scores(prm, [s.tokens], [len(s.prompt)])[0]
    return reward.scalar_probabilities(prm, [s.tokens])[0][s.ends].tolist()


def report(samples, key):
    by_bin = {}
    for s in samples:
        by_bin.setdefault(s.difficulty, []).append(s)
    out = {}
    for b, group in sorted(by_bin.items()):
        auc = tp.auroc([q for s in group for q in s.scores[key]], [y for s in group for y in s.labels])
        fe = tp.first_error_rates(group, key)
        out[b] = {"auroc": auc, "first_error_lowest": fe["first_error_lowest_rate"], "chance": fe["first_error_lowest_chance"]}
    return out


def main():
    out_dir, name = sys.argv[1], sys.argv[2]
    cfg = dict(mix="both", k=1, problems=2048, flawed=8192, steps=200, lr=1e-3, muon_lr=0.02, freeze=0, dense=0, seed=0)
    for a in sys.argv[3:]:
        key, value = a.split("=")
        cfg[key] = type(cfg[key])(value) if not isinstance(cfg[key], int) or "." not in value else float(value)
    torch.manual_seed(cfg["seed"])
    g = torch.Generator().manual_seed(cfg["seed"])
    task = common.read_task(out_dir)
    sft = load_checkpoint(os.path.join(out_dir, "sft", "ckpt.pt"))
    policy = model_from_checkpoint(sft).eval()
    t0 = time.time()
    # evaluation samples: the policy's own, temperature 1, test problems of every bin
    by_bin = {}
    for r in common.read_split(out_dir, "test"):
        if len(by_bin.setdefault(r["difficulty"], [])) < EVAL_PER_BIN:
            by_bin[r["difficulty"]].append(r)
    records = [r for b in sorted(by_bin) for r in by_bin[b]]
    ev = [s for grp in tp.sample_solutions(policy, records, EVAL_K, 1.0, task.p, g, 512, None) for s in grp]
    for s, lps in zip(ev, token_logprobs(policy, ev)):
        s.scores["confidence"] = confidence_scores(s, lps)
    # training examples
    train = []
    if cfg["mix"] in ("policy", "both"):
        recs = common.read_split(out_dir, "train")[:cfg["problems"]]
        train += [s for grp in tp.sample_solutions(policy, recs, cfg["k"], 1.0, task.p, g, 512, None) for s in grp]
    if cfg["mix"] in ("flawed", "both") and cfg["flawed"]:
        rng = random.Random(0)
        more = common.read_split(out_dir, "train")[-cfg["flawed"]:]
        train += [tp.judge(r, encode(prompt_text(r["problem"])), encode(sol), [0.0] * len(encode(sol)),
                           verify(parse_problem(r["problem"], task.p), sol, task.p), task.p) for r in more
                  for sol in (r["solution"], flawed_solution_text(parse_problem(r["problem"], task.p), task.p, rng))]
    prm = model_from_checkpoint(sft)
    if cfg["freeze"]:
        for n, p in prm.named_parameters():
            p.requires_grad_(n.startswith("scalar_head"))
    t1 = time.time()
    examples = [dense_example(s, task.p, cfg["dense"] == 2) if cfg["dense"] else (s.tokens, s.ends, s.labels) for s in train]
    history, _ = tp.train_reward_model(prm, examples,
                                       cfg["steps"], 64, cfg["lr"], cfg["muon_lr"], 0, None)
    train_s = time.time() - t1
    held = train[:400]
    for group in (ev, held):
        for s in group:
            s.scores["prm"] = read_steps(prm, s, cfg["dense"])
    result = {"config": cfg, "train_examples": len(train),
              "train_right_steps": tp.right_steps(train), "final_loss": sum(history[-20:]) / 20,
              "train_auroc": tp.auroc([q for s in held for q in s.scores["prm"]], [y for s in held for y in s.labels]),
              "prm": report(ev, "prm"), "confidence": report(ev, "confidence"),
              "train_seconds": train_s, "seconds": time.time() - t0}
    os.makedirs(os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs"), exist_ok=True)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs", f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(name, json.dumps({k: v for k, v in result.items() if k not in ("prm", "confidence")}))
    for key in ("prm", "confidence"):
        print(f"  {key:10s}", "  ".join(f"d{b}: {v['auroc']:.3f}/{v['first_error_lowest'] or 0:.2f}" for b, v in result[key].items()))


if __name__ == "__main__":
    main()

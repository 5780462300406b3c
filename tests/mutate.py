"""Mutation check: each one-line bug below must fail a test whose name says what broke.

    python tests/mutate.py            # prints, per mutation, the failing tests and their messages
    python tests/mutate.py 20         # only the mutations from the 21st on

Each mutation is applied to a copy of the repository (the working tree is never touched), then
pytest runs the test file that specifies that code. A mutation that no test catches is a hole
in the specification; the script exits 1 if there is one. A script, not a test: it runs the
suite once per mutation (about a minute each).
"""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (what breaks, file, the line as it is, the line mutated, the test file that must catch it)
MUTATIONS = [
    ("PUCT without the square root of the parent's visits", "search.py",
     "sqrt_visits = math.sqrt(node.visit_count)", "sqrt_visits = node.visit_count", "tests/test_search.py"),
    ("MCTS priors uniform instead of the policy's probabilities", "search.py",
     "c.prior = w / sum(weights)", "c.prior = 1 / len(weights)", "tests/test_search.py"),
    ("Math-Shepherd's hard label with all instead of any", "train_prm.py",
     "return sum(right) / len(right) if soft else float(any(right))",
     "return sum(right) / len(right) if soft else float(all(right))", "tests/test_prm.py"),
    ("RoPE replaced by the identity", "model.py",
     "return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)", "return x", "tests/test_model.py"),
    ("Canon made pointwise (no previous positions)", "model.py",
     "for j in range(SHIFT + 1):  # the input j positions back", "for j in range(1):", "tests/test_model.py"),
    ("a flag given as 0 replaced by the preset's value (`or`, not `is None`)", "common.py",
     "if getattr(args, f.name, False) is None:", "if not getattr(args, f.name, False):", "tests/test_common.py"),
    ("every budget of the grid selecting among the whole pool, not its groups of N samples", "search.py",
     "select_among(picks, root, chains[g], answers[g], truth, {m: s[g] for m, s in scores.items()}, prm and prm[g])",
     "select_among(picks, root, chains, answers, truth, {m: s for m, s in scores.items()}, prm)", "tests/test_search.py"),
    ("best-of-N ranking by the reward model's log-odds without the policy's confidence", "search.py",
     "return math.log(p / (1 - p)) + weight * confidence", "return math.log(p / (1 - p))", "tests/test_search.py"),
    ("the PRM-weighted vote weighing by the ranking score, not the PRM's probabilities", "search.py",
     'outcome("prm-vote", vote(answers, prm), None, scored)', 'outcome("prm-vote", vote(answers, scores["bon-prm"]), None, scored)',
     "tests/test_search.py"),
    ("a budget judged on the pool's first group of N only, not on every disjoint group", "search.py",
     "for g in (slice(k * n, (k + 1) * n) for k in range(pool // n)):", "for g in [slice(0, n)]:", "tests/test_search.py"),
    ("the located first error taken as the lowest-scored step, not the largest drop", "train_prm.py",
     "return drops.index(max(drops))", "return scores.index(min(scores))", "tests/test_prm.py"),
    ("a PRM and an ORM trained apart with other settings judged side by side anyway", "train_prm.py",
     'if settings["prm"] != settings["orm"] or', 'if False and settings["prm"] != settings["orm"] or', "tests/test_prm.py"),
    ("the reward models' next-token loss weighted by the label of the token before, not the token predicted", "train_prm.py",
     "y = targets[:, 1:].clamp(min=0)", "y = targets[:, :-1].clamp(min=0)", "tests/test_prm.py"),
    ("the AUROC interval resampling steps, not problems (as if a solution's steps were independent)", "common.py",
     "idx = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in rng.integers(0, len(groups), len(groups))])",
     "idx = rng.integers(0, len(y), len(y))", "tests/test_prm.py"),
    ("generation writing the tokens of the sequences still running into the first rows, not their own", "model.py",
     "tokens[rows, t], logprobs[rows, t] = token, logprob", "tokens[:len(token), t], logprobs[:len(token), t] = token, logprob",
     "tests/test_model.py"),
    ("a chain generated to its end cut at step tokens only, not also at the step length cap", "search.py",
     "n = next((k + 1 for k, t in enumerate(tokens[:max_step_tokens]) if t in stop), min(len(tokens), max_step_tokens))",
     "n = next((k + 1 for k, t in enumerate(tokens) if t in stop), len(tokens))", "tests/test_search.py"),
    ("identical sampled steps kept as separate children (beam search: copies of one beam)", "search.py",
     "if all(child.step != sibling.step for sibling in child.parent.children):", "if True:", "tests/test_search.py"),
    ("beam search not giving the kept steps the slots of the merged ones", "search.py",
     "for _ in range(n if b.parent is None else branching * slots[i] // len(problem))]",
     "for _ in range(n if b.parent is None else branching)]", "tests/test_search.py"),
    ("the grid's tree rows from one draw, not the mean of --tree-draws", "search.py",
     "for k in range(setup.args.tree_draws):", "for k in range(1):", "tests/test_search.py"),
    ("several picks for one problem counted by the first alone", "search.py",
     "outcomes[0].rate = sum(o.answer == truth for o in outcomes) / len(outcomes)",
     "outcomes[0].rate = float(outcomes[0].answer == truth)", "tests/test_search.py"),
    ("every prompt of a batch given the room the longest one leaves in the block", "model.py",
     "rooms = [min(max_new_tokens, model.cfg.block_size - len(p)) for p in prompts]",
     "rooms = [min(max_new_tokens, model.cfg.block_size - T0) for p in prompts]", "tests/test_model.py"),
    ("step search 'at matched tokens' compared with best-of-N at the same N, whatever the tokens", "report.py",
     "return min(options, key=lambda b: abs(math.log(options[b] / spent))) if spent and options else n", "return n",
     "tests/test_report.py"),
    ("--resume bringing back the saved learning rates over this run's flags", "common.py",
     "        group.update(rate)", "        pass", "tests/test_common.py"),
    ("a counting flag accepting 0", "common.py", "if value < lowest:", "if value < 0:", "tests/test_cli.py"),
    ("a resumed reward model drawing other batches than the killed run would have", "train_prm.py",
     '            g.set_state(saved["generator"])', "            pass", "tests/test_prm.py"),
    ("a reward model's resume taking a run with other settings for its own", "train_prm.py",
     '    run = f"{sorted(training_settings(args, sft).items())} {batch_size} {hash(',
     '    run = f"{batch_size} {hash(', "tests/test_prm.py"),
    ("validation's alarm at one standard error, not two", "train_rl.py",
     "margin = 2 * math.sqrt(", "margin = math.sqrt(", "tests/test_rl.py"),
    ("a stopped run keeping the policy it stopped on, not validation's best", "train_rl.py",
     "m.policy.load_state_dict(m.best.state_dict())", "m.policy.train()", "tests/test_rl.py"),
]


def run(mutation):
    name, path, before, after, tests = mutation
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "repo")
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "out", "__pycache__", ".pytest_cache"))
        source = open(os.path.join(copy, path)).read()
        if source.count(before) != 1:
            return f"cannot apply: {before!r} is not once in {path}"
        with open(os.path.join(copy, path), "w") as f:
            f.write(source.replace(before, after))
        result = subprocess.run([sys.executable, "-m", "pytest", tests, "-q", "-rf", "--tb=line", "-m", "not slow",
                                 "-p", "no:cacheprovider"], cwd=copy, capture_output=True, text=True)
    lines = result.stdout.splitlines()
    where = [line.replace(copy + "/", "") for line in lines if line.startswith(copy)]  # --tb=line: file:line: message
    return [line for line in lines if line.startswith("FAILED")] + [f"  {line}" for line in where]


def main(first=0):
    holes = 0
    for mutation in MUTATIONS[first:]:
        failed = run(mutation)
        print(f"## {mutation[0]} ({mutation[1]}: `{mutation[3]}`)")
        if isinstance(failed, str) or not failed:
            holes += 1
            print(failed if isinstance(failed, str) else "NOT CAUGHT: every test passes")
        for line in failed if isinstance(failed, list) else []:
            print(line[:240])
        print()
    sys.exit(1 if holes else 0)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)  # python tests/mutate.py 20: from the 21st mutation on

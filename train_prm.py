"""Stage 2 of the o1 recipe: a process reward model, a verifier that judges every step.

An outcome reward model (ORM) only says whether a whole solution ends in the right answer. A
process reward model (PRM) says, after every step, whether the reasoning so far is still right,
so it can point at the first mistake and rank solutions by how sound they are, not only by
where they land (Lightman et al. 2023, "Let's Verify Step by Step"). o1 needs such a judge
twice: as a reward for RL (train_rl.py) and to steer search at test time (search.py).

1. Sample K solutions to training problems from the SFT policy at a temperature (one batched,
   KV-cached generate call per batch). A good policy makes few mistakes, too few to learn from,
   and a reward model that sees few problems learns them by heart, not how to check a step. So
   F more training problems each add a pair at no sampling cost: the reference chain of thought
   and a flawed copy (data/task.flawed_solution_text: one wrong result, operand, definition,
   extra or skipped step, carried on to the answer).
2. Label every step two ways. The oracle: the verifier (data/verify.py) says whether the step
   and every step still standing before it are right. Monte Carlo, as a lab without an oracle
   must (Wang et al. 2023, "Math-Shepherd"): from the prefix that ends at the step, roll out M
   completions; the hard label is 1 if any reaches the right answer, the soft label is the
   fraction that do. How well they agree with the oracle for M = 1, 4, 16, and what the
   rollouts cost in generated tokens, is measured on a subset.
3. Train the PRM: the SFT weights with the scalar head, binary cross-entropy at each step end on
   the chosen labels (--labels oracle|mc-hard|mc-soft). Train the ORM baseline the same way on
   the final answer's correctness alone.
4. Evaluate on the test bins: step AUROC against the oracle, how often the first wrong step is
   the lowest-scored one, and best-of-N reranking for N = 1, 2, 4, ..., 64 (PRM with each
   aggregation, ORM, majority vote, greedy, and pass@N, the ceiling).

    python train_prm.py --preset tiny --out out/tiny                  # reads out/tiny/{data,sft}
    python train_prm.py --preset tiny --out out/tiny --labels mc-hard # learn from rollouts, no oracle

What it writes, and what search.py and train_rl.py may rely on:
  DIR/prm/ckpt.pt       the PRM, a GPT checkpoint (model.load_checkpoint). Its scalar head at a
                        step end gives the logit that the step and every step still standing
                        before it are right. Step ends are the step tokens and, for a finished
                        solution, the end-of-text token, which scores the answer line as a last
                        step (right chain and right answer). common.step_scores reads them all
                        in one forward pass; common.aggregate turns them into one score (min,
                        prod, last); common.oracle_step_labels gives the labels it learned.
  DIR/prm/orm.pt        the ORM, the same architecture: the logit that the final answer is
                        right, read at the last token (common.outcome_scores).
  DIR/prm/metrics.json  step_auroc (test problems of the training difficulties), per bin, the
                        first-error rate, the Monte Carlo agreement curve, the best-of-N rows
                        ({method, budget, difficulty, accuracy, generated_tokens}), the greedy
                        accuracy_by_difficulty, preset, device, wall time.
Runs on one process (the work is sampling, not training); under torchrun it stops with an error.
"""
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from common import (PRESETS, UserError, aggregate, bin_rates, autocast, lr_at, make_optimizer, oracle_step_labels, outcome_scores,
                    parse, read_split, read_task, run_cli, setup_device, stage_parser, step_ends, step_scores, teardown,
                    wilson, write_json)
from data.task import EOT, PAD, Problem, flawed_solution_text, parse_problem, prompt_text
from data.tokenizer import decode, encode, special_id
from data.verify import verify
from model import generate, load_checkpoint, model_from_checkpoint, save_checkpoint

AGGREGATIONS = ("min", "prod", "last")
AGREEMENT_ROLLOUTS = (1, 4, 16)


# ----------------------------------------------------------------------------- sampling

@dataclass
class Sample:
    """One solution the policy wrote, judged by the verifier."""
    problem: Problem
    difficulty: int
    prompt: list            # token ids of the prompt
    solution: list          # token ids the policy generated
    answer: int | None      # the answer it gave, None if none
    correct: bool           # the final answer is right
    ends: list              # step-end positions in prompt + solution (common.step_ends)
    labels: list            # the oracle label of each step end
    scores: dict = field(default_factory=dict)  # filled in by the evaluation

    @property
    def tokens(self):
        return self.prompt + self.solution


def judge(record, prompt, solution, p):
    problem = parse_problem(record["problem"], p)
    text = decode(solution)
    verdict = verify(problem, text, p)
    return Sample(problem, record["difficulty"], prompt, solution, verdict.answer, verdict.answer_correct,
                  step_ends(prompt + solution, len(prompt)), oracle_step_labels(problem, text, p))


@torch.no_grad()
def sample_solutions(model, records, k, temperature, p, generator, batch_size, desc):
    """k solutions per problem (temperature 0: greedy), in batches through the KV cache.
    Returns one list of k Samples per record."""
    device, eot = model.wte.weight.device, special_id(EOT)
    jobs = [(i, encode(prompt_text(r["problem"]))) for i, r in enumerate(records) for _ in range(k)]
    jobs.sort(key=lambda job: len(job[1]))  # similar lengths: little padding
    out = [[] for _ in records]
    for start in tqdm(range(0, len(jobs), batch_size), desc=desc, leave=False):
        batch = jobs[start:start + batch_size]
        with autocast(device):
            solutions, _ = generate(model, [prompt for _, prompt in batch], model.cfg.block_size, special_id(PAD),
                                    stop_ids=(eot,), temperature=temperature, generator=generator)
        for (i, prompt), solution in zip(batch, solutions):
            out[i].append(judge(records[i], prompt, solution, p))
    return out


# ----------------------------------------------------------------------------- Monte Carlo step labels

def step_prefixes(samples):
    """(sample, j) for every step end j of every sample except the answer step, whose value needs
    no rollout: the answer is given, right or wrong."""
    eot = special_id(EOT)
    return [(s, j) for s in samples for j, end in enumerate(s.ends) if s.tokens[end] != eot]


def policy_rollout(model, p, temperature, generator):
    """The policy as a rollout function: for each (sample, j), continue the sample's tokens up to
    and including step end j to the end, and say whether the answer is right and how many tokens
    that took. A prefix that already fills the context cannot finish: a wrong outcome."""
    device, eot, block = model.wte.weight.device, special_id(EOT), model.cfg.block_size

    def rollout(prefixes):
        prompts = [s.tokens[:s.ends[j] + 1] for s, j in prefixes]
        room = [i for i, prompt in enumerate(prompts) if len(prompt) < block]
        outcomes = [(False, 0)] * len(prefixes)
        if room:
            with autocast(device):
                completions, _ = generate(model, [prompts[i] for i in room], block, special_id(PAD), stop_ids=(eot,),
                                          temperature=temperature, generator=generator)
            for i, completion in zip(room, completions):
                s, _ = prefixes[i]
                text = decode(prompts[i][len(s.prompt):] + completion)
                outcomes[i] = (verify(s.problem, text, p).answer_correct, len(completion))
        return outcomes

    return rollout


def monte_carlo_outcomes(prefixes, rollout, m, batch_size=512, desc=None):
    """Roll every prefix out m times. rollout(list of prefixes) -> one (reached the right answer,
    tokens generated) pair per prefix: the policy (policy_rollout) or, in tests, a stand-in.
    Returns, per prefix, its m pairs."""
    jobs = [prefix for prefix in prefixes for _ in range(m)]
    results = []
    for start in tqdm(range(0, len(jobs), batch_size), desc=desc, disable=desc is None, leave=False):
        results.extend(rollout(jobs[start:start + batch_size]))
    return [results[i * m:(i + 1) * m] for i in range(len(prefixes))]


def monte_carlo_label(outcomes, soft):
    """Math-Shepherd's step value from its rollouts (Wang et al. 2023, eqs. 3 and 4):
    hard  y = 1 if any of the M completions reaches the right answer, else 0
    soft  y = (number of completions that reach the right answer) / M"""
    right = [reached for reached, _ in outcomes]
    return sum(right) / len(right) if soft else float(any(right))


def monte_carlo_step_labels(samples, rollout, m, soft, batch_size=512, desc=None):
    """Monte Carlo labels for every step end of every sample (the answer step: its outcome),
    and the number of tokens the rollouts generated."""
    eot = special_id(EOT)
    outcomes = monte_carlo_outcomes(step_prefixes(samples), rollout, m, batch_size, desc)
    per_step = iter(outcomes)  # step_prefixes lists the steps sample by sample, in order
    labels = [[float(s.correct) if s.tokens[end] == eot else monte_carlo_label(next(per_step), soft) for end in s.ends]
              for s in samples]
    return labels, sum(n for pairs in outcomes for _, n in pairs)


def monte_carlo_agreement(prefixes, outcomes, rollout_counts=AGREEMENT_ROLLOUTS):
    """How Monte Carlo labels from the first M rollouts of each step agree with the oracle, and
    what those rollouts cost. A false positive is a wrong step from which some rollout still
    reaches the right answer; a false negative, a right step from which none does."""
    oracle = [s.labels[j] for s, j in prefixes]
    rows = []
    for m in rollout_counts:
        hard = [monte_carlo_label(o[:m], soft=False) for o in outcomes]
        soft = [monte_carlo_label(o[:m], soft=True) for o in outcomes]
        wrong_steps = [h for h, y in zip(hard, oracle) if y == 0]
        right_steps = [h for h, y in zip(hard, oracle) if y == 1]
        tokens = sum(n for o in outcomes for _, n in o[:m])
        rows.append({
            "rollouts": m, "steps": len(oracle),
            "hard_agreement": sum(h == y for h, y in zip(hard, oracle)) / max(1, len(oracle)),
            "hard_false_positive_rate": sum(wrong_steps) / len(wrong_steps) if wrong_steps else None,
            "hard_false_negative_rate": 1 - sum(right_steps) / len(right_steps) if right_steps else None,
            "soft_auroc": auroc(soft, oracle),
            "generated_tokens": tokens, "generated_tokens_per_step": tokens / max(1, len(oracle)),
        })
    return rows


# ----------------------------------------------------------------------------- measures

def auroc(scores, labels):
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative, ties counting half. = Mann-Whitney U / (positives x negatives), U from the ranks
    of the positives among all scores (tied scores share their mean rank). None if a class is empty."""
    n_pos = sum(1 for y in labels if y == 1)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = sorted(range(len(scores)), key=scores.__getitem__)
    ranks, i = [0.0] * len(scores), 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1  # ranks 1..n, ties: the mean of theirs
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y == 1)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def right_steps(samples):
    """The fraction of step labels that are 1: the balance the reward model learns from."""
    labels = [y for s in samples for y in s.labels]
    return sum(labels) / max(1, len(labels))


def first_error_lowest(samples):
    """Among solutions with a wrong step and at least two scored steps: how often the PRM gives
    the first wrong step the lowest score (a tie for lowest shares the credit), and what picking
    a step at random would score."""
    hits, chance, n = 0.0, 0.0, 0
    for s in samples:
        probs = s.scores["steps"]
        if 0 not in s.labels or len(probs) < 2:
            continue
        lowest = [j for j, q in enumerate(probs) if q == min(probs)]
        hits += (s.labels.index(0) in lowest) / len(lowest)
        chance += 1 / len(probs)
        n += 1
    return {"first_error_lowest_rate": hits / n if n else None, "first_error_lowest_chance": chance / n if n else None,
            "first_error_solutions": n}


def choose(group, method):
    """The solution a method picks from a group of samples (None: no answer at all)."""
    if method == "majority":  # the most common answer; a tie goes to the answer seen first
        answers = Counter(s.answer for s in group if s.answer is not None)
        if not answers:
            return None
        top = answers.most_common(1)[0][0]
        return next(s for s in group if s.answer == top)
    return max(group, key=lambda s: s.scores[method])  # the first of the best on a tie


def best_of_n(groups, greedy, difficulty, best_of):
    """Rows {method, budget, difficulty, accuracy, generated_tokens} for N = 1, 2, 4, ..., best_of.
    groups: per problem, its best_of samples; each N averages over the best_of / N disjoint
    groups of N samples, so small N are not one noisy draw. pass@n: some sample is right."""
    methods = [f"prm_{how}" for how in AGGREGATIONS] + ["orm", "majority", "pass@n"]
    right = sum(g.correct for g in greedy)
    rows = [{"method": "greedy", "budget": 1, "difficulty": difficulty, "accuracy": right / len(greedy),
             "problems": len(greedy), "interval": list(wilson(right, len(greedy))),
             "generated_tokens": sum(len(g.solution) for g in greedy) / len(greedy)}]
    n = 1
    while n <= best_of:
        subsets = [samples[i:i + n] for samples in groups for i in range(0, best_of - n + 1, n)]
        tokens = sum(len(s.solution) for subset in subsets for s in subset) / len(subsets)
        for method in methods:
            if method == "pass@n":
                right = sum(any(s.correct for s in subset) for subset in subsets)
            else:
                right = sum(bool(pick and pick.correct) for pick in (choose(subset, method) for subset in subsets))
            # the interval counts problems, not subsets: the subsets of one problem are not independent
            rows.append({"method": method, "budget": n, "difficulty": difficulty, "accuracy": right / len(subsets),
                         "problems": len(groups), "interval": list(wilson(right / len(subsets) * len(groups), len(groups))),
                         "generated_tokens": tokens})
        n *= 2
    return rows


# ----------------------------------------------------------------------------- training

def reward_batch(examples, device):
    """examples: (tokens, positions, labels). x (B, T) right-padded token ids; targets (B, T) the
    label at each position where the model is read, -1 elsewhere."""
    T = max(len(tokens) for tokens, _, _ in examples)
    x = torch.full((len(examples), T), special_id(PAD), dtype=torch.long)
    targets = torch.full((len(examples), T), -1.0)
    for i, (tokens, positions, labels) in enumerate(examples):
        x[i, :len(tokens)] = torch.tensor(tokens)
        targets[i, positions] = torch.tensor(labels, dtype=torch.float)
    return x.to(device), targets.to(device)


def train_reward_model(model, examples, steps, batch_size, lr, muon_lr, seed, desc):
    """Binary cross-entropy on the scalar head at the labelled positions; every weight trains,
    starting from the SFT policy's, which already reads the task, with the SFT's optimizer (Muon
    for the blocks' matrices, AdamW for the rest). Returns the loss history and the number of
    tokens trained on (padding included: it is computed)."""
    device = model.wte.weight.device
    optimizer = make_optimizer(model, lr, muon_lr)
    g = torch.Generator().manual_seed(seed)
    history, tokens = [], 0
    model.train()
    for step in (bar := tqdm(range(steps), desc=desc, leave=False)):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, group["peak_lr"], max(1, steps // 20))
        x, targets = reward_batch([examples[i] for i in torch.randint(len(examples), (batch_size,), generator=g)], device)
        with autocast(device):
            scores = model(x, head="scalar")  # (B, T) logits
        scored = targets >= 0
        # -[y log sigmoid(s) + (1 - y) log(1 - sigmoid(s))], averaged over the labelled positions
        loss = F.binary_cross_entropy_with_logits(scores.float()[scored], targets[scored])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history.append(loss.item())
        tokens += x.numel()
        bar.set_postfix(loss=f"{history[-1]:.3f}")
    model.eval()
    return history, tokens


# ----------------------------------------------------------------------------- main

def main(argv=None):
    parser = stage_parser(__doc__)
    parser.add_argument("--labels", default="oracle", choices=["oracle", "mc-hard", "mc-soft"],
                        help="what the PRM learns from: the verifier, or Monte Carlo rollouts (default: oracle)")
    parser.add_argument("--agg", default="min", choices=AGGREGATIONS,
                        help="step scores -> solution score for the printed summary; metrics hold all (default: min)")
    parser.add_argument("--problems", type=int, help="training problems to sample solutions to (default: the preset's)")
    parser.add_argument("--samples", type=int, help="K, solutions per training problem (default: the preset's)")
    parser.add_argument("--flawed", type=int, help="F, training problems that add their reference solution and a flawed "
                                                   "copy (default: the preset's; 0: the policy's samples only)")
    parser.add_argument("--rollouts", type=int, help="M, rollouts per step for Monte Carlo labels (default: the preset's)")
    parser.add_argument("--agreement-samples", type=int, help="solutions whose steps measure Monte Carlo vs oracle")
    parser.add_argument("--steps", type=int, help="optimizer steps for the PRM and for the ORM (default: the preset's)")
    parser.add_argument("--lr", type=float, help="peak AdamW learning rate, embeddings, gains, the head (default: the preset's)")
    parser.add_argument("--muon-lr", type=float, help="peak Muon learning rate, the blocks' matrices (default: the preset's)")
    parser.add_argument("--eval-problems", type=int, help="test problems per difficulty bin (default: the preset's)")
    parser.add_argument("--best-of", type=int, help="largest N of best-of-N (default: the preset's)")
    args = parse(parser, argv)
    t0, preset = time.time(), PRESETS[args.preset]
    n_problems, k = args.problems or preset.prm_problems, args.samples or preset.prm_samples
    n_flawed = args.flawed if args.flawed is not None else preset.prm_flawed
    m, steps = args.rollouts or preset.prm_rollouts, args.steps or preset.prm_steps
    lr, muon_lr, temperature = args.lr or preset.prm_lr, args.muon_lr or preset.prm_muon_lr, preset.prm_temperature
    n_eval, best_of = args.eval_problems or preset.prm_eval_problems, args.best_of or preset.prm_best_of
    n_agree = args.agreement_samples if args.agreement_samples is not None else preset.prm_agreement_samples

    # ---- inputs: the task, the SFT policy
    task = read_task(args.out)
    if task != preset.task:
        raise UserError(f"{args.out}/data was prepared for another preset: run data/prepare.py --preset {args.preset} --out {args.out}")
    d = setup_device(args.device)
    if d.world > 1:
        teardown(d)
        raise UserError("train_prm.py runs on one process: start it with python, not torchrun")
    sft = load_checkpoint(os.path.join(args.out, "sft", "ckpt.pt"), expect_config=preset.model_config())
    torch.manual_seed(args.seed)
    generator = torch.Generator(d.device).manual_seed(args.seed)
    policy = model_from_checkpoint(sft, attn=args.attn).to(d.device).eval()
    gen_batch = 2048 if d.device.type == "cuda" else 512
    seconds = {}

    # ---- 1. sample K solutions to each training problem
    t = time.time()
    train_records = read_split(args.out, "train")[:n_problems]
    train = [s for group in sample_solutions(policy, train_records, k, temperature, task.p, generator, gen_batch, "prm sample")
             for s in group]
    print(f"prm: {len(train)} solutions to {len(train_records)} training problems at temperature {temperature}: "
          f"{sum(s.correct for s in train) / len(train):.3f} right answers, "
          f"{right_steps(train):.3f} of {sum(len(s.labels) for s in train)} steps right (oracle)")
    rng = random.Random(args.seed)
    more = read_split(args.out, "train")[-n_flawed:] if n_flawed else []  # the split's end: other problems
    pairs = [judge(r, encode(prompt_text(r["problem"])), encode(solution), task.p) for r in more
             for solution in (r["solution"], flawed_solution_text(parse_problem(r["problem"], task.p), task.p, rng))]
    if pairs:
        print(f"prm: and {n_flawed} reference solutions with a flawed copy each (data/task.py): "
              f"{right_steps(pairs[1::2]):.3f} of the flawed copies' steps right")
    seconds["sample"] = time.time() - t

    # ---- 2. Monte Carlo labels: the agreement curve on a subset; every step if the PRM learns from them
    t = time.time()
    rollout = policy_rollout(policy, task.p, temperature, generator)
    subset = random.Random(args.seed).sample(train, min(n_agree, len(train)))
    prefixes = step_prefixes(subset)
    outcomes = monte_carlo_outcomes(prefixes, rollout, max(AGREEMENT_ROLLOUTS), gen_batch, "prm rollouts (agreement)")
    agreement = monte_carlo_agreement(prefixes, outcomes)
    for row in agreement:
        print(f"prm: Monte Carlo M={row['rollouts']:>2} vs oracle on {row['steps']} steps: agreement {row['hard_agreement']:.3f}, "
              f"soft AUROC {fmt(row['soft_auroc'])}, {row['generated_tokens_per_step']:.0f} tokens per step")
    label_tokens = 0
    sampled, train = train, train + pairs  # what the reward models learn from
    if args.labels == "oracle":
        labels = [s.labels for s in train]
    else:
        labels, label_tokens = monte_carlo_step_labels(train, rollout, m, args.labels == "mc-soft", gen_batch,
                                                       f"prm rollouts (M={m} labels)")
    seconds["monte_carlo"] = time.time() - t

    # ---- 3. train the PRM and the ORM, both from the SFT weights
    t = time.time()
    batch_size = preset.prm_batch_size
    prm = model_from_checkpoint(sft, attn=args.attn).to(d.device)
    n_params = sum(p.numel() for p in prm.parameters())
    prm_history, prm_tokens = train_reward_model(prm, [(s.tokens, s.ends, y) for s, y in zip(train, labels)],
                                     steps, batch_size, lr, muon_lr, args.seed, "prm train")
    orm = model_from_checkpoint(sft, attn=args.attn).to(d.device)
    orm_history, orm_tokens = train_reward_model(orm, [(s.tokens, [len(s.tokens) - 1], [float(s.correct)]) for s in train],
                                     steps, batch_size, lr, muon_lr, args.seed, "orm train")
    state = dict(step=steps, preset=args.preset, labels=args.labels, sft_step=sft["step"])
    save_checkpoint(os.path.join(args.out, "prm", "ckpt.pt"), prm, kind="prm", loss_history=prm_history, **state)
    save_checkpoint(os.path.join(args.out, "prm", "orm.pt"), orm, kind="orm", loss_history=orm_history, **state)
    print(f"prm: trained PRM ({args.labels} labels) and ORM for {steps} steps: final loss {prm_history[-1]:.3f} / {orm_history[-1]:.3f}")
    seconds["train"] = time.time() - t

    # ---- 4. evaluate on the test bins: step AUROC, the first error, best-of-N
    t = time.time()
    by_bin = {}
    for r in read_split(args.out, "test"):
        if len(by_bin.setdefault(r["difficulty"], [])) < n_eval:
            by_bin[r["difficulty"]].append(r)
    bins = sorted(by_bin)
    records = [r for b in bins for r in by_bin[b]]
    greedy = [g[0] for g in sample_solutions(policy, records, 1, 0.0, task.p, generator, gen_batch, "prm eval greedy")]
    groups = sample_solutions(policy, records, best_of, temperature, task.p, generator, gen_batch, "prm eval sample")
    samples = [s for group in groups for s in group]
    sequences = [s.tokens for s in samples]
    for s, probs, outcome in zip(samples, step_scores(prm, sequences, [len(s.prompt) for s in samples]),
                                 outcome_scores(orm, sequences)):
        s.scores = {"steps": probs, "orm": outcome, **{f"prm_{how}": aggregate(probs, how) for how in AGGREGATIONS}}

    def step_auroc(chosen):
        return auroc([q for s in chosen for q in s.scores["steps"]], [y for s in chosen for y in s.labels])

    in_range = [s for s in samples if s.difficulty <= task.max_train_d]
    rows = []
    for b in bins:
        rows += best_of_n([g for g, r in zip(groups, records) if r["difficulty"] == b],
                          [g for g, r in zip(greedy, records) if r["difficulty"] == b], b, best_of)
    seconds["evaluate"] = time.time() - t

    # ---- write
    metrics = {
        "stage": "prm", "preset": args.preset, "device": str(d.device), "labels": args.labels, "agg": args.agg,
        "train_problems": len(train_records), "samples_per_problem": k, "temperature": temperature,
        "flawed_problems": n_flawed, "train_solutions": len(train),
        "train_answer_accuracy": sum(s.correct for s in sampled) / len(sampled),
        "train_step_labels": sum(len(s.labels) for s in train), "train_step_right_fraction": right_steps(train),
        "train_step_right_fraction_by_difficulty": {str(b): right_steps([s for s in train if s.difficulty == b])
                                                    for b in sorted({s.difficulty for s in train})},
        "monte_carlo_rollouts": m if args.labels != "oracle" else None, "monte_carlo_label_tokens": label_tokens,
        "steps": steps, "batch_size": batch_size, "lr": lr, "muon_lr": muon_lr,
        # compute: 6 x params per trained token (PRM and ORM), 2 x params per sampled token (solutions, labels)
        "train_flops": n_params * (6 * (prm_tokens + orm_tokens)
                                   + 2 * (sum(len(s.tokens) for s in train) + label_tokens)),
        "prm_final_loss": prm_history[-1], "orm_final_loss": orm_history[-1],
        "eval_problems_per_bin": n_eval, "best_of": best_of,
        "step_auroc": step_auroc(in_range),
        "step_auroc_all_bins": step_auroc(samples),
        "step_auroc_by_difficulty": {str(b): step_auroc([s for s in samples if s.difficulty == b]) for b in bins},
        "solution_auroc": {method: auroc([s.scores[method] for s in in_range], [int(s.correct) for s in in_range])
                           for method in [f"prm_{how}" for how in AGGREGATIONS] + ["orm"]},
        **first_error_lowest(in_range),
        "monte_carlo_agreement": agreement,
        **bin_rates({b: [int(g.correct) for g, r in zip(greedy, records) if r["difficulty"] == b] for b in bins}),
        "best_of_n": rows,
        "seconds": seconds,
        "wall_time_s": time.time() - t0,
    }
    write_json(os.path.join(args.out, "prm", "metrics.json"), metrics)
    print(best_of_n_table(rows, f"prm_{args.agg}", task.max_train_d))
    print(f"prm: step AUROC {fmt(metrics['step_auroc'])} (training bins), by bin "
          + ", ".join(f"{b}: {fmt(v)}" for b, v in metrics["step_auroc_by_difficulty"].items())
          + f"; first error lowest-scored {fmt(metrics['first_error_lowest_rate'])} (chance {fmt(metrics['first_error_lowest_chance'])})")
    print(f"prm: {metrics['wall_time_s']:.0f}s, metrics in {args.out}/prm/metrics.json")
    teardown(d)
    return metrics


def fmt(x):
    return "n/a" if x is None else f"{x:.3f}"


def best_of_n_table(rows, prm_method, train_max_d):
    """Accuracy per bin and N: the PRM (the chosen aggregation), the ORM, majority vote, pass@N."""
    columns = [prm_method, "orm", "majority", "pass@n"]
    lines = [f"| difficulty | N | {' | '.join(columns)} | greedy |", "|---:|---:|" + "---:|" * (len(columns) + 1)]
    at = {(r["method"], r["budget"], r["difficulty"]): r["accuracy"] for r in rows}
    for b in sorted({r["difficulty"] for r in rows}):
        for n in sorted({r["budget"] for r in rows if r["method"] == "orm"}):
            ood = " (beyond training)" if b > train_max_d else ""
            lines.append(f"| {b}{ood} | {n} | " + " | ".join(f"{at[c, n, b]:.3f}" for c in columns) + f" | {at['greedy', 1, b]:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    run_cli(main)

"""Stage 2 of the o1 recipe: a process reward model, a verifier that judges every step.

An outcome reward model (ORM) only says whether a whole solution ends in the right answer. A
process reward model (PRM) says, after every step, whether the reasoning so far is still right,
so it can point at the first mistake and rank solutions by how sound they are, not only by
where they land (Lightman et al. 2023, "Let's Verify Step by Step"). o1 needs such a judge
twice: as a reward for RL (train_rl.py) and to steer search at test time (search.py).

1. Sample one solution to each of P training problems from the SFT policy at temperature 1 (one
   batched, KV-cached generate call per batch): the policy's own mistakes are the ones a PRM must
   catch (results/verifiers/README.md: flawed copies of reference solutions taught it mistakes the
   policy does not make).
2. Label every token. The oracle: 1 while the text so far can still become a right solution, 0 from
   the first token that cannot (the verifier, data/verify.py, and the first-error rule). Monte Carlo,
   as a lab without an oracle must (Wang et al. 2023, "Math-Shepherd"): from the prefix that ends at
   a step, roll out M completions; the hard label is 1 if any reaches the right answer, the soft label
   the fraction that do; every token of the step carries it. How well they agree with the oracle for
   M = 1, 4, 16, and what they cost in generated tokens, is measured on a subset.
3. Train the PRM: the SFT weights with the scalar head, binary cross-entropy at every solution token
   on the chosen labels (--labels oracle|mc-hard|mc-soft). A step scores its weakest token: the
   mistake is judged where it is made, so no single position has to re-derive a whole step, which a
   2-layer trunk cannot (results/verifiers/README.md). Beside it, the policy's own next-token loss on
   the tokens labelled right keeps the trunk a policy: on the reward loss alone fine-tuning wears away
   what SFT knew about the next token, the knowledge a judge of each token needs. The ORM baseline
   learns the final answer's correctness at every token (Cobbe et al. 2021), trained the same way.
4. Evaluate the verifiers head to head on the policy's own samples of test problems, per bin: step
   AUROC against the oracle of the PRM and of the policy's confidence (no training: its least likely
   token so far), the PRM's lead with its paired interval over problems, outcome AUROC of the ORM, and
   how often the first wrong step is the step each locates (its largest drop), its lowest-scored, and
   its first scored below 1/2. What each buys in best-of-N is search.py's grid: selection lives there.

    python train_prm.py --preset tiny --out out/tiny                  # reads out/tiny/{data,sft}
    python train_prm.py --preset tiny --out out/tiny --labels mc-hard # learn from rollouts, no oracle
    python train_prm.py --preset tiny --out out/tiny --only orm       # the ORM alone (run.sh: on the other lane),
    python train_prm.py --preset tiny --out out/tiny --only prm       #   the PRM alone,
    python train_prm.py --preset tiny --out out/tiny --only evaluate  #   then the two judged side by side
    (after a kill, the same command with --resume samples the solutions again and continues the training)
What it writes, and what search.py and train_rl.py may rely on:
  DIR/prm/ckpt.pt       the PRM, a GPT checkpoint (model.load_checkpoint). Its scalar head at a
                        token gives the logit that the solution up to there is still right; a
                        step's score is the lowest over its tokens, the end-of-text token ending
                        the answer line as a last step. reward.step_scores reads them all in one
                        forward pass; reward.aggregate turns them into one score (min, prod, last).
  DIR/prm/orm.pt        the ORM, the same architecture: the logit that the final answer is right,
                        read at the last token (reward.outcome_scores). Each checkpoint keeps its
                        training's settings, loss, tokens and seconds: --only evaluate refuses a
                        pair trained apart with other settings.
  DIR/prm/metrics.json  step_auroc (test problems of the training difficulties), per bin the verifiers
                        head to head (verifiers_by_difficulty), the first-error rates, the Monte Carlo
                        agreement curve, preset, device, wall time. One process (the work is sampling).
"""
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from common import (PRESETS, UserError, auroc, auroc_difference, autocast, count, flops, fmt, group_by_difficulty, load_optimizer,
                    lr_at, make_optimizer, parse, read_split, read_task, run_cli, sample_and_verify, setup_device, stage_parser,
                    teardown, write_json)
from data.task import EOT, PAD, STEP, Problem, parse_problem, prompt_text, step_text, values
from data.tokenizer import decode, encode, special_id
from data.verify import take_backs, verify
from model import load_checkpoint, model_from_checkpoint, save_checkpoint
from reward import load_reward_model, outcome_scores, step_ends, step_scores, step_spans

AGREEMENT_ROLLOUTS = (1, 4, 16)
EVAL_STREAM = 1_000_003  # the evaluation samples' own random stream: args.seed + this, whatever the labels drew


# ----------------------------------------------------------------------------- sampling

@dataclass
class Sample:
    """One solution the policy wrote, judged by the verifier."""
    problem: Problem
    difficulty: int
    prompt: list            # token ids of the prompt
    solution: list          # token ids the policy generated
    logprobs: list          # log pi(token) of each, at the sampling temperature
    answer: int | None      # the answer it gave, None if none
    correct: bool           # the final answer is right
    ends: list              # step-end positions in prompt + solution (common.step_ends)
    labels: list            # the oracle label of each step end
    scores: dict = field(default_factory=dict)  # filled in by the evaluation

    @property
    def tokens(self):
        return self.prompt + self.solution


def judge(record, prompt, solution, logprobs, verdict, p):
    problem = parse_problem(record["problem"], p)
    return Sample(problem, record["difficulty"], prompt, solution, logprobs, verdict.answer, verdict.answer_correct,
                  step_ends(prompt + solution, len(prompt)), oracle_step_labels(problem, decode(solution), p))


@torch.no_grad()
def sample_solutions(model, records, k, temperature, p, generator, batch_size, desc):
    """k solutions per problem (temperature 0: greedy), in batches through the KV cache.
    Returns one list of k Samples per record."""
    jobs = [(i, encode(prompt_text(r["problem"]))) for i, r in enumerate(records) for _ in range(k)]
    jobs.sort(key=lambda job: len(job[1]))  # similar lengths: little padding
    results = sample_and_verify(model, [prompt for _, prompt in jobs], [parse_problem(records[i]["problem"], p) for i, _ in jobs], p,
                                temperature, generator, batch_size, desc=desc)
    out = [[] for _ in records]
    for (i, prompt), (solution, lp, verdict) in zip(jobs, results):
        out[i].append(judge(records[i], prompt, solution, lp, verdict, p))
    return out


# ----------------------------------------------------------------------------- oracle labels

def oracle_step_labels(problem, solution, p):
    """The verifier's label for each step end of a solution (text; one label per step end as
    step_ends counts them): 1 when the step is right and every step still standing before it is
    right, else 0. This is the first-error rule: after the first wrong step every step is 0,
    however right in itself, until a back token takes the wrong step back; then the chain is
    clean again and the correction scores 1. The answer line, when the solution reaches its
    end-of-text, is the last step: 1 when the chain is clean and the answer right."""
    verdict = verify(problem, solution, p)
    standing, labels = [], []  # standing: the verdicts of the steps not taken back
    for piece, right in zip(solution.split(EOT)[0].replace(PAD, "").split(STEP)[:-1], verdict.step_correct):
        _, backs = take_backs(piece)
        del standing[max(0, len(standing) - backs):]
        standing.append(right)
        labels.append(int(all(standing)))
    if verdict.finished:
        labels.append(int(all(standing) and verdict.answer_correct))
    return labels


def oracle_token_labels(s, p):
    """The oracle's label of every solution token up to the last step end: 1 while the text so
    far can still become a right solution, 0 from the first token that cannot. A step's last
    token gets the step's own label (oracle_step_labels); inside the first wrong step of a clean
    chain, the tokens before the mistake are still 1. This is where the PRM learns to look."""
    defs, truth = s.problem.by_var(), values(s.problem, p)
    first = [len(s.prompt)] + [e + 1 for e in s.ends[:-1]]
    standing, out = [], []  # standing: (right, variable) of each step not taken back
    for j, (a, e) in enumerate(zip(first, s.ends)):
        text, backs = take_backs(decode(s.tokens[a:e + 1]))
        del standing[max(0, len(standing) - backs):]
        if s.labels[j] or backs or not all(right for right, _ in standing):
            out += [s.labels[j]] * (e + 1 - a)
        else:  # the first wrong step: right up to the first token that no right step (or answer) begins with
            known = {v for v, d in defs.items() if d.op is None} | {v for _, v in standing}
            targets = [step_text(d, truth) + STEP for d in defs.values()
                       if d.op is not None and all(isinstance(x, int) or x in known for x in d.args)]
            targets.append(f"answer: {truth[s.problem.query]}{EOT}")
            written, viable = "", True
            for t in s.tokens[a:e + 1]:
                written += decode([t])
                viable = viable and any(x.startswith(written) for x in targets)
                out.append(int(viable))
        standing.append((bool(s.labels[j]), text[:1]))
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
    def rollout(prefixes):
        prompts = [s.tokens[:s.ends[j] + 1] for s, j in prefixes]
        room = [i for i, prompt in enumerate(prompts) if len(prompt) < model.cfg.block_size]
        outcomes = [(False, 0)] * len(prefixes)
        if room:
            results = sample_and_verify(model, [prompts[i] for i in room], [prefixes[i][0].problem for i in room], p, temperature,
                                        generator, batch_size=len(room), starts=[len(prefixes[i][0].prompt) for i in room])
            for i, (completion, _, verdict) in zip(room, results):
                outcomes[i] = (verdict.answer_correct, len(completion))
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

def right_steps(samples):
    """The fraction of step labels that are 1: the balance the reward model learns from."""
    labels = [y for s in samples for y in s.labels]
    return sum(labels) / max(1, len(labels))


def confidence_scores(s):
    """The policy's own confidence as a verifier, no training: step j scores the lowest token
    log-probability of any step up to j (a sampled unlikely token is where a mistake often
    starts), so it follows the first-error rule as the labels do."""
    scores, lowest = [], 0.0  # log-probabilities are at most 0
    for a, b in step_spans(s.ends, len(s.prompt)):
        lowest = min([lowest] + s.logprobs[a - len(s.prompt):b - len(s.prompt)])
        scores.append(lowest)
    return scores


def running_min(scores):
    """m_j, the lowest of scores 0..j: the solution so far is right only if every step so far is."""
    out = []
    for q in scores:
        out.append(min(out[-1], q) if out else q)
    return out


def located_first_error(scores, top):
    """The step a verifier puts the first error at. Its scores made non-increasing (running_min)
    estimate P(steps 0..j right), so the drop m_{j-1} - m_j, from m_{-1} = top, is its chance that
    the first error is step j; the located step is the largest drop (the earliest of a tie)."""
    m = running_min([top] + list(scores))
    drops = [before - after for before, after in zip(m, m[1:])]
    return drops.index(max(drops))


def first_error_rates(samples, key):
    """Among solutions with a wrong step and at least two steps: how often the first wrong step
    is the one the verifier locates (located_first_error), the lowest-scored (the earliest lowest;
    a strict test, as the first-error rule labels every later step wrong too, so a later step may
    rightly score lower), the first step scored below 1/2 (ProcessBench's rule, Zheng et al. 2024;
    for probabilities only), and what picking a step at random would score."""
    top = 0.0 if key == "confidence" else 1.0  # the highest score: log-probability 0, probability 1
    located, lowest, found, chance, n = 0, 0, 0, 0.0, 0
    for s in samples:
        scores = s.scores[key]
        if 0 not in s.labels or len(scores) < 2:
            continue
        first = s.labels.index(0)
        located += located_first_error(scores, top) == first
        lowest += scores.index(min(scores)) == first
        found += next((j for j, q in enumerate(scores) if q < 0.5), None) == first
        chance += 1 / len(scores)
        n += 1
    rate = (lambda hits: hits / n if n else None)
    found = rate(found) if key != "confidence" else None  # a log-probability has no 1/2 to fall below
    return {"first_error_located_rate": rate(located), "first_error_lowest_rate": rate(lowest), "first_error_found_rate": found,
            "first_error_lowest_chance": rate(chance), "first_error_solutions": n}


def problem_steps(samples):
    """Per problem (its prompt), the PRM's and the confidence's scores and the oracle labels of
    every step of its samples: the unit a bootstrap resamples."""
    groups = {}
    for s in samples:
        g = groups.setdefault(tuple(s.prompt), ([], [], []))
        g[0].extend(s.scores["prm"]), g[1].extend(s.scores["confidence"]), g[2].extend(s.labels)
    return groups


def verifier_table(samples, bins):
    """Per bin, on the same samples: step AUROC of the PRM and of the policy's confidence, and their
    difference with its paired interval; outcome AUROC (is the final answer right?) of the ORM, the
    PRM (its weakest step) and the confidence."""
    rows = {}
    for b in bins:
        group = [s for s in samples if s.difficulty == b]
        steps = [y for s in group for y in s.labels]
        outcome = [int(s.correct) for s in group]
        rows[str(b)] = {
            "samples": len(group), "right_steps": sum(steps) / max(1, len(steps)),
            **{f"step_auroc_{key}": auroc([q for s in group for q in s.scores[key]], steps) for key in ("prm", "confidence")},
            **{f"outcome_auroc_{key}": auroc([min(s.scores[key], default=0.0) for s in group], outcome)
               for key in ("orm", "prm", "confidence")},
            "step_auroc_prm_minus_confidence": auroc_difference(list(problem_steps(group).values())),
            **{f"{key}_{k}": v for key in ("prm", "confidence") for k, v in first_error_rates(group, key).items()},
        }
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


def train_reward_model(model, examples, steps, batch_size, lr, muon_lr, seed, desc, lm_weight=0.0, state=None, every=100):
    """Binary cross-entropy on the scalar head at the labelled positions; every weight trains,
    starting from the SFT policy's, which already reads the task, with the SFT's optimizer (Muon
    for the blocks' matrices, Adam for the rest). lm_weight adds the policy's own next-token
    loss on the tokens labelled right, weighted by the label: the trunk keeps predicting what a
    right solution writes next, the knowledge that judging a token needs (results/verifiers/README.md).
    state = (path, the run's fingerprint): the training so far goes there every `every` steps, and a saved
    one of the same run is continued (--resume). Returns the loss history and the tokens trained on (padding included)."""
    device = model.wte.weight.device
    optimizer = make_optimizer(model, lr, muon_lr)
    g = torch.Generator().manual_seed(seed)
    (path, run), history, tokens, start = state or (None, None), [], 0, 0
    if path and os.path.exists(path):  # a killed run's weights, moments and batch draws
        saved = load_checkpoint(path, expect_config=model.cfg)
        if saved["run"] == run:  # the same solutions (sampled again) and the same settings
            model.load_state_dict(saved["model"])
            load_optimizer(optimizer, saved["optimizer"])
            g.set_state(saved["generator"])
            history, tokens, start = saved["loss_history"], saved["trained_tokens"], saved["step"]
        print(f"prm: {desc}: " + (f"resuming from step {start}" if start else "another run's (other solutions or settings): from step 0"))
    model.train()
    for step in (bar := tqdm(range(start, steps), initial=start, total=steps, desc=desc, leave=False)):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, group["peak_lr"], max(1, steps // 20))
        x, targets = reward_batch([examples[i] for i in torch.randint(len(examples), (batch_size,), generator=g)], device)
        with autocast(device):
            logits, scores = model(x, head="both")  # (B, T, V) next-token logits, (B, T) reward logits
        scored = targets >= 0
        # -[y log sigmoid(s) + (1 - y) log(1 - sigmoid(s))], averaged over the labelled positions
        bce = F.binary_cross_entropy_with_logits(scores.float()[scored], targets[scored])
        loss = bce
        if lm_weight:
            loss = loss + lm_weight * right_token_loss(logits.float(), x, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history.append(bce.item())  # the reward model's own loss
        tokens += x.numel()
        bar.set_postfix(loss=f"{history[-1]:.3f}")
        if path and (step + 1) % every == 0 and step + 1 < steps:
            save_checkpoint(path, model, step=step + 1, optimizer=optimizer.state_dict(), generator=g.get_state(),
                            loss_history=history, trained_tokens=tokens, run=run)
    model.eval()
    return history, tokens


def right_token_loss(logits, x, targets):
    """The next-token cross-entropy of the tokens labelled right, each weighted by its label y
    (a soft Monte Carlo label counts as much as it is sure): sum_t y_t * -log p(x_t | x_<t) / sum_t y_t.
    logits (B, T, V) at every position; x (B, T) the tokens; targets (B, T) labels, -1 where none."""
    y = targets[:, 1:].clamp(min=0)  # position t predicts token t + 1
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), x[:, 1:], reduction="none")  # (B, T-1)
    return (y * nll).sum() / y.sum().clamp(min=1)


def token_examples(samples, labels):
    """(tokens, positions, labels) for train_reward_model: one label per solution token."""
    return [(s.tokens, list(range(len(s.prompt), len(s.prompt) + len(y))), y) for s, y in zip(samples, labels)]


def spread(s, step_labels):
    """A label per step -> a label per token: every token of a step carries the step's label."""
    return [y for (a, b), y in zip(step_spans(s.ends, len(s.prompt)), step_labels) for _ in range(a, b)]


# ----------------------------------------------------------------------------- main

def parse_args(argv):
    parser = stage_parser(__doc__)
    parser.add_argument("--labels", default="oracle", choices=["oracle", "mc-hard", "mc-soft"],
                        help="what the PRM learns from: the verifier, or Monte Carlo rollouts (default: oracle)")
    parser.add_argument("--problems", type=count(), help="training problems, one solution sampled to each (default: the preset's)")
    parser.add_argument("--rollouts", type=count(), help="M, rollouts per step for Monte Carlo labels (default: the preset's)")
    parser.add_argument("--agreement-samples", type=count(0), help="solutions whose steps measure Monte Carlo vs oracle")
    parser.add_argument("--steps", type=count(), help="optimizer steps for the PRM and for the ORM (default: the preset's)")
    parser.add_argument("--lr", type=float, help="peak Adam learning rate, embeddings, gains, the head (default: the preset's)")
    parser.add_argument("--muon-lr", type=float, help="peak Muon learning rate, the blocks' matrices (default: the preset's)")
    parser.add_argument("--lm-weight", type=float, help="weight of the next-token loss on right tokens kept beside the reward "
                        "loss, for the PRM and the ORM (0: none; default: the preset's)")
    parser.add_argument("--eval-problems", type=count(), help="test problems per difficulty bin (default: the preset's)")
    parser.add_argument("--only", choices=["prm", "orm", "evaluate"], help="one part, so that two processes can share the "
                        "work: train the PRM, or the ORM (each on its own draw of the same solutions), or judge the two "
                        "already trained (default: all three)")
    parser.add_argument("--resume", action="store_true", help="continue a killed run's training of the PRM or ORM "
                        "(DIR/prm/KIND_train.pt) after sampling its solutions again")
    return parse(parser, argv, lambda preset, args: preset.prm)


def make_labels(args, policy, train, p, temperature, generator, gen_batch):
    """Phase 2: the oracle's label on every token, or Monte Carlo step values spread over the
    steps' tokens; and, on a subset, Monte Carlo against the oracle at several M. Returns the
    labels, the tokens the label rollouts generated, and the agreement rows."""
    rollout = policy_rollout(policy, p, temperature, generator)
    subset = random.Random(args.seed).sample(train, min(args.agreement_samples, len(train)))
    prefixes = step_prefixes(subset)
    agreement = monte_carlo_agreement(prefixes, monte_carlo_outcomes(prefixes, rollout, max(AGREEMENT_ROLLOUTS), gen_batch,
                                                                     "prm rollouts (agreement)"))
    for row in agreement:
        print(f"prm: Monte Carlo M={row['rollouts']:>2} vs oracle on {row['steps']} steps: agreement {row['hard_agreement']:.3f}, "
              f"soft AUROC {fmt(row['soft_auroc'])}, {row['generated_tokens_per_step']:.0f} tokens per step")
    if args.labels == "oracle":
        return [oracle_token_labels(s, p) for s in train], 0, agreement
    step_labels, label_tokens = monte_carlo_step_labels(train, rollout, args.rollouts, args.labels == "mc-soft", gen_batch,
                                                        f"prm rollouts (M={args.rollouts} labels)")
    return [spread(s, y) for s, y in zip(train, step_labels)], label_tokens, agreement


def train_verifier(args, sft, examples, batch_size, device, kind, facts):
    """Phase 3, for one reward model: from the SFT weights, judging every token; saved with what the
    evaluation reports of its training (facts). With --resume, one this run finished before a kill is kept."""
    t, path, state_path = time.time(), reward_model_path(args.out, kind), os.path.join(args.out, "prm", f"{kind}_train.pt")
    run = f"{sorted(training_settings(args, sft).items())} {batch_size} {hash(tuple((tuple(x), tuple(y)) for x, _, y in examples))}"
    if args.resume and os.path.exists(path) and load_checkpoint(path).get("run") == run:
        print(f"prm: the {kind.upper()} in {path} is this run's, finished before the kill: kept")
        return
    if not args.resume:  # an older run's training is never to be continued by this one
        Path(state_path).unlink(missing_ok=True)
    model = model_from_checkpoint(sft, attn=args.attn).to(device)
    history, tokens = train_reward_model(model, examples, args.steps, batch_size, args.lr, args.muon_lr, args.seed,
                                         f"{kind} train", args.lm_weight, (state_path, run))
    seconds = dict(facts.pop("seconds"), train=time.time() - t)
    save_checkpoint(path, model, kind=kind, labels=args.labels, loss_history=history, trained_tokens=tokens, seconds=seconds,
                    run=run, **facts, **training_settings(args, sft))
    Path(state_path).unlink(missing_ok=True)
    print(f"prm: trained the {kind.upper()} for {args.steps} steps: final loss {history[-1]:.3f}")


def reward_model_path(out, kind):
    return os.path.join(out, "prm", "ckpt.pt" if kind == "prm" else "orm.pt")


def training_settings(args, sft):
    """What a PRM and the ORM it is compared with must share: trained apart (--only), they are checked."""
    return dict(preset=args.preset, seed=args.seed, sft_step=sft["step"], step=args.steps, lr=args.lr, muon_lr=args.muon_lr, lm_weight=args.lm_weight)


def main(argv=None):
    args = parse_args(argv)
    t0, preset = time.time(), PRESETS[args.preset]
    temperature = preset.prm.temperature

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
    gen_batch, batch_size = preset.prm.gen_batch, preset.prm.batch_size

    if args.only != "evaluate":
        # ---- 1. one solution to each training problem: the policy's own mistakes are what a PRM must catch
        t = time.time()
        records = read_split(args.out, "train")[:args.problems]
        train = [g[0] for g in sample_solutions(policy, records, 1, temperature, task.p, generator, gen_batch, "prm sample")]
        print(f"prm: {len(train)} solutions to training problems at temperature {temperature}: "
              f"{sum(s.correct for s in train) / len(train):.3f} right answers, "
              f"{right_steps(train):.3f} of {sum(len(s.labels) for s in train)} steps right (oracle)")
        sampled = dict(sampled_tokens=sum(len(s.tokens) for s in train), seconds={"sample": time.time() - t})
    if args.only in (None, "prm"):
        # ---- 2. labels; 3. the PRM on them
        t = time.time()
        labels, label_tokens, agreement = make_labels(args, policy, train, task.p, temperature, generator, gen_batch)
        facts = dict(sampled, seconds=dict(sampled["seconds"], label=time.time() - t), monte_carlo_label_tokens=label_tokens,
                     monte_carlo_rollouts=args.rollouts if args.labels != "oracle" else None, monte_carlo_agreement=agreement,
                     train_solutions=len(train), train_answer_accuracy=sum(s.correct for s in train) / len(train),
                     train_step_labels=sum(len(s.labels) for s in train), train_step_right_fraction=right_steps(train))
        train_verifier(args, sft, token_examples(train, labels), batch_size, d.device, "prm", facts)
    if args.only in (None, "orm"):
        # ---- 3. the ORM: the final answer's correctness at every token (Cobbe et al. 2021), read at the last
        outcomes = [[float(s.correct)] * (len(s.solution)) for s in train]
        facts = sampled if args.only == "orm" else dict(sampled_tokens=0, seconds={})  # together, one draw serves both
        train_verifier(args, sft, token_examples(train, outcomes), batch_size, d.device, "orm", dict(facts))
    if args.only in ("prm", "orm"):
        print(f"prm: the {args.only.upper()} in {reward_model_path(args.out, args.only)}; judge it beside the other: "
              f"python train_prm.py --only evaluate --out {args.out}")
        teardown(d)
        return None
    metrics = evaluate(args, policy, task, d, temperature, gen_batch, sft)
    print(verifier_summary(metrics["verifiers_by_difficulty"], task.max_train_d))
    print(f"prm: {time.time() - t0:.0f}s, metrics in {args.out}/prm/metrics.json")
    teardown(d)
    return metrics


def evaluate(args, policy, task, d, temperature, gen_batch, sft):
    """Phase 4: the verifiers head to head, on the policy's own samples of test problems; the
    metrics, with what the two checkpoints say of their training."""
    t = time.time()
    ckpts = {kind: load_checkpoint(reward_model_path(args.out, kind)) for kind in ("prm", "orm")}
    if any("trained_tokens" not in c for c in ckpts.values()):
        raise UserError(f"the reward models in {args.out}/prm were written by an older train_prm.py: train them again")
    settings = {kind: {k: c.get(k) for k in training_settings(args, sft)} for kind, c in ckpts.items()}
    if settings["prm"] != settings["orm"] or settings["prm"]["sft_step"] != sft["step"]:
        raise UserError(f"the PRM and the ORM in {args.out}/prm were trained apart with other settings or another SFT "
                        f"policy ({settings['prm']} against {settings['orm']}): train them again")
    prm, orm = (load_reward_model(reward_model_path(args.out, kind), policy, args.attn, d.device) for kind in ("prm", "orm"))
    judged_on = torch.Generator(d.device).manual_seed(args.seed + EVAL_STREAM)  # the same samples whatever came before
    samples, bins = evaluation_samples(policy, prm, orm, read_split(args.out, "test"), args.eval_problems,
                                       PRESETS[args.preset].prm.eval_samples, temperature, task.p, judged_on, gen_batch)
    verifiers = verifier_table(samples, bins)
    in_range = [s for s in samples if s.difficulty <= task.max_train_d]
    p, o = ckpts["prm"], ckpts["orm"]
    seconds = {**p["seconds"], **{f"orm_{k}": v for k, v in o["seconds"].items()}, "evaluate": time.time() - t}
    metrics = {
        "stage": "prm", "preset": args.preset, "device": str(d.device), "temperature": temperature,
        **{k: p.get(k) for k in ("labels", "train_solutions", "train_answer_accuracy", "train_step_labels", "train_step_right_fraction",
                                 "monte_carlo_rollouts", "monte_carlo_label_tokens", "lr", "muon_lr", "lm_weight")},
        "steps": p["step"], "batch_size": PRESETS[args.preset].prm.batch_size,
        "train_flops": flops(prm.flop_params(), trained_tokens=p["trained_tokens"] + o["trained_tokens"],
                             forward_tokens=p["sampled_tokens"] + o["sampled_tokens"] + p["monte_carlo_label_tokens"]),
        "prm_final_loss": p["loss_history"][-1], "orm_final_loss": o["loss_history"][-1],
        "eval_problems_per_bin": args.eval_problems, "eval_samples_per_problem": PRESETS[args.preset].prm.eval_samples,
        "step_auroc": auroc([q for s in in_range for q in s.scores["prm"]], [y for s in in_range for y in s.labels]),
        "step_auroc_by_difficulty": {b: row["step_auroc_prm"] for b, row in verifiers.items()},
        **first_error_rates(in_range, "prm"),
        "verifiers_by_difficulty": verifiers, "monte_carlo_agreement": p["monte_carlo_agreement"],
        "seconds": seconds, "wall_time_s": sum(seconds.values()),
    }
    write_json(os.path.join(args.out, "prm", "metrics.json"), metrics)
    return metrics


def evaluation_samples(policy, prm, orm, test, n_eval, k, temperature, p, generator, gen_batch):
    """k samples of the policy on each of the first n_eval test problems of every bin, scored by
    the PRM (every step), the ORM and the policy's confidence."""
    by_bin = group_by_difficulty(test)
    bins = list(by_bin)
    records = [test[i] for b in bins for i in by_bin[b][:n_eval]]
    samples = [s for g in sample_solutions(policy, records, k, temperature, p, generator, gen_batch, "prm eval sample") for s in g]
    sequences, prompts = [s.tokens for s in samples], [len(s.prompt) for s in samples]
    for s, steps, outcome in zip(samples, step_scores(prm, sequences, prompts), outcome_scores(orm, sequences)):
        s.scores = {"prm": steps, "orm": [outcome], "confidence": confidence_scores(s)}
    return samples, bins


def verifier_summary(rows, train_max_d):
    """One line per bin: the PRM against the policy's confidence and the ORM."""
    return "\n".join(
        f"prm: d={b}{' (beyond training)' if int(b) > train_max_d else ''}: step AUROC PRM {fmt(r['step_auroc_prm'])}, "
        f"confidence {fmt(r['step_auroc_confidence'])}; outcome AUROC ORM {fmt(r['outcome_auroc_orm'])}, PRM "
        f"{fmt(r['outcome_auroc_prm'])}; first error located {fmt(r['prm_first_error_located_rate'])} (lowest-scored "
        f"{fmt(r['prm_first_error_lowest_rate'])}), first below 1/2 {fmt(r['prm_first_error_found_rate'])}" for b, r in rows.items())


if __name__ == "__main__":
    run_cli(main, resumable=True)

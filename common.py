"""Plumbing every stage shares, in one place: presets and the flags that override them, device
and DDP setup, the learning-rate schedule and the optimizer, batches of token ids, the one
sample-and-verify loop (and greedy evaluation on it), the FLOPs estimate, intervals and paired
comparisons, JSON files. The o1 recipe itself lives in the stage scripts and reward.py.
"""
import argparse
import contextlib
import json
import math
import os
import sys
from dataclasses import dataclass, field, fields

import torch
import torch.distributed as dist

from data.task import BACK, EOT, PAD, ProblemError, TaskConfig, parse_problem, prompt_text
from data.tokenizer import encode, decode, fingerprint, get_tokenizer, special_id
from data.verify import verify
from attention import ATTENTION_BACKENDS
from model import CheckpointError, GPTConfig, generate


# ----------------------------------------------------------------------------- presets

@dataclass(frozen=True)
class SFTConfig:
    """train_sft.py: chain-of-thought fine-tuning; each field is the default of the flag of its name."""
    steps: int              # optimizer steps
    batch_size: int         # sequences per optimizer step, over all processes
    micro_batch: int        # sequences per forward pass; batch_size / (micro_batch * world) accumulation steps
    lr: float               # Adam's peak: the embeddings and norm gains
    warmup: int             # steps of linear warm-up
    eval_every: int         # steps between quick evaluations (and checkpoints)
    muon_lr: float = 0.02   # Muon's peak: the weight matrices inside the blocks
    sweep_widths: tuple = ()  # the smaller widths run.sh trains too (train-time vs test-time compute): the size dial
    sweep_steps: int = 0      # their optimizer steps (and the self-correction SFT's); 0: steps


@dataclass(frozen=True)
class PRMConfig:
    """train_prm.py: the process and outcome reward models."""
    problems: int = 16384        # training problems the policy writes one solution to: the PRM's examples
    temperature: float = 1.0     # sampling temperature for solutions and Monte Carlo rollouts
    rollouts: int = 4            # M: rollouts per step for --labels mc-hard / mc-soft
    agreement_samples: int = 64  # solutions whose steps get 1, 4, 16 rollouts to compare with the oracle
    steps: int = 600             # optimizer steps, for the PRM and again for the ORM (more of both: results/verifiers)
    batch_size: int = 64         # sequences per optimizer step
    lr: float = 1e-3             # Adam's peak (embeddings, gains, the scalar head)
    muon_lr: float = 0.02        # Muon's peak (the blocks' matrices), as in SFT
    lm_weight: float = 0.3       # the next-token loss on right tokens, kept beside the reward loss (results/verifiers)
    eval_problems: int = 100     # test problems per difficulty bin for the verifiers' AUROC
    eval_samples: int = 4        # the policy's samples of each, the verifiers' common test set
    gen_batch: int = 512         # solutions generated at once (samples, Monte Carlo rollouts)


@dataclass(frozen=True)
class RLConfig:
    """train_rl.py: PPO and GRPO."""
    iterations: int = 24         # policy updates, each on fresh rollouts
    rollouts: int = 64           # solutions sampled per iteration (GRPO: problems x group size)
    minibatch: int = 32          # solutions per gradient step
    lr: float = 1e-4             # policy learning rate (the value model's is 10x unless --critic-lr)
    eval_every: int = 8          # iterations between validations and checkpoints
    epochs: int = 2              # passes over each iteration's rollouts
    group_size: int = 8          # GRPO: samples per problem
    temperature: float = 1.0     # sampling temperature of the rollouts
    kl_coef: float = 0.05        # beta, weight of the KL to the SFT policy
    lam: float = 0.95            # GAE lambda; gamma is 1
    clip: float = 0.2            # PPO's clip epsilon
    value_clip: float = 0.2      # the value loss's clip
    max_grad_norm: float = 1.0   # gradient clipping
    critic_warmup: int = 2       # PPO: critic-only iterations first
    unfinished_penalty: float = 1.0  # subtracted from a solution with no end-of-text
    train_d: tuple = ()          # training difficulties, each as often as listed; (): each d in proportion to p (1 - p)


@dataclass(frozen=True)
class SearchConfig:
    """search.py: the test-time compute grid and its methods."""
    grid_problems: int = 200        # test problems per bin of the grid in the phenomena bins (common.phenomena_bins)
    grid_problems_other: int = 50   # ... and in the other bins
    temperature: float = 0.7        # sampling temperature of every method but greedy (results/search/temperature.md)
    aggregate: str = "min"          # best-of-N: a chain's PRM score from its steps' (min, prod, last)
    confidence_weight: float = 0.0  # best-of-N by a reward model: + this x the policy's confidence (search.rank_score; 0: off)
    expand: int = 4                 # MCTS: steps sampled per expansion, at most N
    c_puct: float = 1.0             # MCTS: exploration constant of PUCT
    rollout_steps: int = 0          # MCTS: value a leaf by a rollout of this many steps (0: the PRM's score)
    tree_draws: int = 2             # the grid's beam and MCTS: independent runs per problem, averaged (one is a noisy row)


@dataclass(frozen=True)
class Preset:
    """Everything one size of the pipeline needs: the task and its data, the model, and a section per
    stage; a stage's flag left out takes its section's field of the same name (parse)."""
    task: TaskConfig
    # data: problems per split (test: per difficulty bin)
    n_train: int
    n_val: int
    n_test_per_bin: int
    # model
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    sft: SFTConfig
    prm: PRMConfig = field(default_factory=PRMConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    eval_problems: int = 128  # validation problems in a quick evaluation (SFT, RL)

    def model_config(self, width=None):
        """The model of this preset; width (n_embd) is the size knob of the SFT sweep: the depth
        and the head size stay, the number of heads follows the width."""
        width = width or self.n_embd
        head_dim = self.n_embd // self.n_head
        if width % head_dim:
            raise UserError(f"--width {width} must be a multiple of the head size {head_dim}")
        return GPTConfig(vocab_size=get_tokenizer().n_vocab, block_size=self.block_size,
                         n_layer=self.n_layer, n_head=width // head_dim, n_embd=width)


PRESETS = {
    # seconds on a laptop CPU: the test suite's size
    "test": Preset(TaskConfig(n_assign=6, max_train_d=2, max_eval_d=4), n_train=400, n_val=32, n_test_per_bin=8,
                   n_layer=2, n_head=2, n_embd=32, block_size=128, eval_problems=8,
                   sft=SFTConfig(steps=6, batch_size=8, micro_batch=4, lr=3e-3, warmup=2, eval_every=3, sweep_widths=(16,)),
                   prm=PRMConfig(problems=16, agreement_samples=4, steps=4, batch_size=8, eval_problems=2, eval_samples=2),
                   rl=RLConfig(iterations=2, rollouts=8, minibatch=4, eval_every=1),
                   search=SearchConfig(grid_problems=3, grid_problems_other=2)),
    # minutes on a 2-core CPU. Training difficulties 1..3 give a graded policy (about 0.9 / 0.75 /
    # 0.4 greedy: results/regime/README.md), so search, verifiers and RL have problems the policy
    # sometimes solves; d = 4, 5 are beyond training
    "tiny": Preset(TaskConfig(n_assign=6, max_train_d=3, max_eval_d=5), n_train=40000, n_val=256, n_test_per_bin=200,
                   n_layer=2, n_head=4, n_embd=96, block_size=160,
                   sft=SFTConfig(steps=1600, batch_size=64, micro_batch=64, lr=3e-3, warmup=60, eval_every=400,
                                 sweep_widths=(48,), sweep_steps=600),
                   # RL: 64 rollouts an iteration on the hardest trained bin, 32 more on the easy ones, where an
                   # extra step is punished (on d = 3 alone it learns to write more steps everywhere: results/rl)
                   rl=RLConfig(iterations=96, rollouts=96, train_d=(1, 2, 3, 3, 3, 3)),
                   search=SearchConfig(grid_problems=100, grid_problems_other=25)),
    # minutes on one GPU: the size the later stages use. Training difficulties 1..8 of 16
    # assignments, to match the tiny preset's graded profile in spirit (200 steps of its SFT ran on
    # the H200, results/h200; the whole pipeline has not, and the PRM and RL sizes are first guesses)
    "small": Preset(TaskConfig(n_assign=16, max_train_d=8, max_eval_d=12), n_train=200000, n_val=512, n_test_per_bin=200,
                    n_layer=6, n_head=6, n_embd=384, block_size=448,
                    sft=SFTConfig(steps=3000, batch_size=128, micro_batch=64, lr=1e-3, warmup=200, eval_every=500,
                                  sweep_widths=(128, 256)),
                    prm=PRMConfig(problems=65536, agreement_samples=256, steps=1500, batch_size=128, lr=1e-4, muon_lr=0.005,
                                  gen_batch=2048),
                    rl=RLConfig(iterations=200, rollouts=256, minibatch=64, lr=3e-5, eval_every=20)),
}


# ----------------------------------------------------------------------------- command line

class UserError(Exception):
    """Something the user can fix; printed as one line, no traceback."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + error
        sys.exit(f"{self.prog}: error: {message}")


def count(lowest=1):
    """An argparse type for a flag that counts (steps, problems, a batch): an integer of at least
    `lowest`, so that --steps -1 or --micro-batch 0 is one line at once, not a traceback later."""
    def integer(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{value}: give at least {lowest}")
        return value
    return integer


def stage_parser(description):
    """The flags every stage takes (DESIGN section 5)."""
    parser = Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=PRESETS, help="size of everything (default: tiny)")
    parser.add_argument("--out", default=None, help="run directory (default: out/PRESET)")
    parser.add_argument("--attn", default="sdpa", choices=ATTENTION_BACKENDS, help="attention backend (default: sdpa)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def parse(parser, argv, section=None):
    """The stage's flags. section(preset, args): the preset's section for this stage (SFTConfig,
    RLConfig, ...); every flag left out takes the section's field of its name, the one place where
    "a flag overrides the preset" is written (`is None`, so a flag given as 0 counts)."""
    args = parser.parse_args(argv)
    args.out = args.out or os.path.join("out", args.preset)
    if os.path.exists(args.out) and not os.path.isdir(args.out):  # before the stage's work, not after it
        parser.error(f"--out {args.out}: a file, not a run directory")
    if section is not None:
        defaults = section(PRESETS[args.preset], args)
        for f in fields(defaults):
            if getattr(args, f.name, False) is None:
                setattr(args, f.name, getattr(defaults, f.name))
    return args


def run_cli(main, resumable=False):
    """Run a script's main; errors a user can cause become one line on stderr and exit code 1.
    resumable: the script takes --resume, which a user who interrupted it is told of."""
    try:
        main()
    except (UserError, CheckpointError, ProblemError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted: run again with --resume to continue from the last checkpoint" if resumable else "interrupted")


# ----------------------------------------------------------------------------- device, DDP

@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def master(self):
        return self.rank == 0


def setup_device(device=None):
    """Plain python: one process. Under torchrun: DDP, nccl on GPUs, gloo on CPU."""
    try:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise UserError(f"--device {device}: not a device; give cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {device}: this code runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but this torch sees no GPU")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
    if "RANK" not in os.environ:
        return Dist(device=device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, device)


def teardown(d):
    if d.world > 1:
        dist.destroy_process_group()


def autocast(device):
    """bf16 autocast on GPU (matmuls in bf16, master weights and reductions in fp32); fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lr_at(step, total, peak, warmup):
    """Linear warmup to peak, then cosine decay to a tenth of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def orthogonalize(G, steps=5):
    """Approximately U V^T for G = U S V^T: every singular value pushed to about 1 by a quintic
    Newton-Schulz iteration (the coefficients of Jordan et al. 2024, tuned to converge in 5 steps)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G / (G.norm() + 1e-7)  # singular values <= 1, where the iteration converges
    tall = G.size(0) > G.size(1)
    if tall:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if tall else X


class Muon(torch.optim.Optimizer):
    """Muon (Jordan et al. 2024) for weight matrices, Adam for the rest (AdamW's decoupled decay is
    written in, at weight_decay 0 in every group). Each param group says which with "muon": True/False.
    A matrix's step is its Nesterov momentum, orthogonalized: all directions of the update move by
    the same amount, so the rare directions that a sharp lookup needs learn as fast as the common
    ones (on this task: half the loss of Adam at equal steps).
    Embeddings and norm gains are not matrices of a linear map, and stay on Adam."""

    def __init__(self, groups, momentum=0.95, betas=(0.9, 0.95), eps=1e-8):
        super().__init__(groups, dict(momentum=momentum, betas=betas, eps=eps, weight_decay=0.0, muon=False))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state, g = self.state[p], p.grad
                p.mul_(1 - lr * wd)
                if group["muon"]:
                    m = state.setdefault("momentum", torch.zeros_like(p))
                    m.mul_(group["momentum"]).add_(g)
                    update = orthogonalize(g + group["momentum"] * m)  # Nesterov: look one step ahead
                    p.add_(update, alpha=-lr * max(1.0, p.size(0) / p.size(1)) ** 0.5)  # same RMS for tall matrices
                else:
                    (b1, b2), t = group["betas"], state.get("step", 0) + 1
                    m, v = state.setdefault("m", torch.zeros_like(p)), state.setdefault("v", torch.zeros_like(p))
                    state["step"] = t
                    m.lerp_(g, 1 - b1)
                    v.lerp_(g * g, 1 - b2)
                    p.addcdiv_(m / (1 - b1 ** t), (v / (1 - b2 ** t)).sqrt() + group["eps"], value=-lr)


def load_optimizer(optimizer, state):
    """An optimizer's saved state (moments, step counts) for --resume, keeping the learning rates of
    this run's flags: load_state_dict alone would bring back the saved ones unannounced."""
    rates = [{k: group[k] for k in ("lr", "peak_lr") if k in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, rate in zip(optimizer.param_groups, rates):
        group.update(rate)


def make_optimizer(model, lr, muon_lr):
    """Muon for the weight matrices of the blocks' linear layers; Adam for the embeddings, the norm
    gains and the Canon weights (not linear maps). Each group keeps its peak lr, which the schedule scales."""
    linear = {id(m.weight) for m in model.blocks.modules() if isinstance(m, torch.nn.Linear)}
    inside, rest = [], []
    for p in model.parameters():
        if p.requires_grad:
            (inside if id(p) in linear else rest).append(p)
    return Muon([{"params": inside, "muon": True, "lr": muon_lr, "peak_lr": muon_lr},
                 {"params": rest, "muon": False, "lr": lr, "peak_lr": lr}])


# ----------------------------------------------------------------------------- data

def read_split(out, split):
    """DIR/data/SPLIT.jsonl: one record per problem (problem, difficulty, solution), each with its
    line number as "id": the name every per-problem outcome file uses for the problem."""
    path = os.path.join(out, "data", f"{split}.jsonl")
    if not os.path.exists(path):
        raise UserError(f"no data at {path}: run python data/prepare.py --out {out} first")
    with open(path) as f:
        return [{**json.loads(line), "id": i} for i, line in enumerate(f)]


def read_task(out):
    path = os.path.join(out, "data", "meta.json")
    if not os.path.exists(path):
        raise UserError(f"no data at {path}: run python data/prepare.py --out {out} first")
    with open(path) as f:
        meta = json.load(f)
    if meta["tokenizer"] != fingerprint(get_tokenizer()):
        raise UserError(f"{path} was written with tokenizer {meta['tokenizer']}: run data/prepare.py again")
    return TaskConfig(**meta["task"])


def encode_examples(records):
    """Token ids of prompt + solution, and the prompt's length (the loss skips the prompt)."""
    prompts = get_tokenizer().encode_batch([prompt_text(r["problem"]) for r in records], allowed_special="all")
    solutions = get_tokenizer().encode_batch([r["solution"] for r in records], allowed_special="all")
    return [(p + s, len(p)) for p, s in zip(prompts, solutions)]


def make_batch(examples, device):
    """x (B, T) inputs, y (B, T) next-token targets, -1 where no loss: prompt and padding."""
    T = max(len(ids) for ids, _ in examples) - 1
    x = torch.full((len(examples), T), special_id(PAD), dtype=torch.long)
    y = torch.full((len(examples), T), -1, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(examples):
        ids = torch.tensor(ids)
        x[i, :len(ids) - 1] = ids[:-1]
        y[i, n_prompt - 1:len(ids) - 1] = ids[n_prompt:]  # the target at position t is token t+1
    return x.to(device), y.to(device)


# ----------------------------------------------------------------------------- sample and verify, evaluation

@torch.no_grad()
def sample_and_verify(model, prompts, problems, p, temperature=0.0, generator=None, batch_size=256, starts=None, desc=None):
    """The loop under every stage (evaluation, the PRM's samples, RL's rollouts, Monte Carlo
    labels): continue each prompt (token ids) through the KV cache until end-of-text, in batches
    of batch_size in the order given (a caller whose prompts differ in length sorts them first:
    model.length_batches), and check each chain with the verifier against its problem. The chain checked is the prompt from starts[i] (default: its
    end) plus the new tokens, so a rollout from a partial solution is judged whole. Returns per
    prompt: (new tokens, their log-probabilities, Verdict)."""
    from tqdm import tqdm
    starts = [len(x) for x in prompts] if starts is None else starts
    out = []
    for b in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=desc is None, leave=False):
        with autocast(model.wte.weight.device):
            tokens, logprobs = generate(model, prompts[b:b + batch_size], model.cfg.block_size, special_id(PAD),
                                        stop_ids=(special_id(EOT),), temperature=temperature, generator=generator)
        for i, (new, lp) in enumerate(zip(tokens, logprobs), start=b):
            out.append((new, lp, verify(problems[i], decode(prompts[i][starts[i]:] + new), p)))
    return out


@torch.no_grad()
def evaluate_policy(model, records, task, device, batch_size=256, desc=None):
    """Greedy decoding on each problem, scored by the verifier. Per difficulty bin: the fraction of
    right final answers with its n and 95% interval, and the fraction of right steps among the
    steps written; and every problem's outcome (id, difficulty, right or wrong, tokens), so that
    any interval or paired comparison can be recomputed from the file."""
    model.eval()
    back = special_id(BACK)
    order = sorted(range(len(records)), key=lambda i: len(records[i]["problem"]))  # similar lengths batch well
    results = sample_and_verify(model, [encode(prompt_text(records[i]["problem"])) for i in order],
                                [parse_problem(records[i]["problem"], task.p) for i in order], task.p, batch_size=batch_size, desc=desc)
    rows = [None] * len(records)  # per problem: right answer, steps written, right steps, tokens, took a step back
    for i, (out, _, v) in zip(order, results):
        rows[i] = (int(v.answer_correct), len(v.step_correct), sum(v.step_correct), len(out), int(back in out))
    model.train()
    outcomes = {"problem": [r.get("id", i) for i, r in enumerate(records)], "difficulty": [r["difficulty"] for r in records],
                "correct": [row[0] for row in rows], "tokens": [row[3] for row in rows]}
    bins = group_by_difficulty(records)
    mean = lambda idx, col: sum(rows[i][col] for i in idx) / len(idx)  # noqa: E731
    return {
        "accuracy": sum(outcomes["correct"]) / max(1, len(records)),
        **bin_rates({d: [rows[i][0] for i in idx] for d, idx in bins.items()}),
        "step_accuracy_by_difficulty": {str(d): sum(rows[i][2] for i in idx) / max(1, sum(rows[i][1] for i in idx))
                                        for d, idx in bins.items()},
        "generated_tokens_by_difficulty": {str(d): mean(idx, 3) for d, idx in bins.items()},  # mean per problem
        "back_rate_by_difficulty": {str(d): mean(idx, 4) for d, idx in bins.items()},  # solutions that take a step back
        "outcomes": outcomes,
    }


def flops(params, trained_tokens=0, forward_tokens=0):
    """Compute, the usual estimate (Kaplan et al. 2020): 6 x parameters per token trained on
    (forward and backward), 2 x parameters per token only run forward (generated, scored)."""
    return params * (6 * trained_tokens + 2 * forward_tokens)


def group_by_difficulty(records):
    """{difficulty: [indices of its records]}, bins in increasing difficulty."""
    bins = {}
    for i, r in enumerate(records):
        bins.setdefault(r["difficulty"], []).append(i)
    return dict(sorted(bins.items()))


def accuracy_table(metrics, train_max_d):
    """The per-bin table every stage prints: difficulty, answer accuracy with its interval, step accuracy."""
    acc, step = metrics["accuracy_by_difficulty"], metrics["step_accuracy_by_difficulty"]
    n, ci = metrics["problems_by_difficulty"], metrics["interval_by_difficulty"]
    lines = ["| difficulty | problems | accuracy (95% interval) | step accuracy |", "|---:|---:|---:|---:|"]
    for d in acc:
        ood = " (beyond training)" if int(d) > train_max_d else ""
        lines.append(f"| {d}{ood} | {n[d]} | {acc[d]:.3f} ({ci[d][0]:.3f}-{ci[d][1]:.3f}) | {step[d]:.3f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- statistics
# Every accuracy carries its n and a 95% interval; a claim that one method beats another on the
# same problems rests on a paired interval of the difference, and is "shown" only when that
# interval excludes zero.

def wilson(k, n, z=1.96):
    """The 95% Wilson score interval of a success rate k / n (Wilson 1927). Unlike p +- z sqrt(p(1-p)/n)
    it stays inside [0, 1] and does not shrink to a point at k = 0 or k = n."""
    if n == 0:
        return (0.0, 1.0)
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def bin_rates(correct_by_bin):
    """Per bin, from 0/1 outcomes: accuracy, its n and its Wilson interval (the keys every metrics file uses)."""
    return {"accuracy_by_difficulty": {str(d): sum(c) / len(c) for d, c in correct_by_bin.items()},
            "problems_by_difficulty": {str(d): len(c) for d, c in correct_by_bin.items()},
            "interval_by_difficulty": {str(d): list(wilson(sum(c), len(c))) for d, c in correct_by_bin.items()}}


def paired_difference(a, b, resamples=4000, seed=0):
    """mean(a) - mean(b) for two methods' 0/1 outcomes on the same problems (a[i], b[i]: problem i),
    with its 95% paired bootstrap interval: resample problems with replacement, each problem's
    pair of outcomes kept together, so what both methods get right or wrong alike adds no noise."""
    import numpy as np
    if len(a) != len(b) or not a:
        raise ValueError(f"paired outcomes need the same problems: {len(a)} against {len(b)}")
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(lo), float(hi)


def fmt(x):
    """A rate or an AUROC to three decimals, or n/a where there is none."""
    return "n/a" if x is None else f"{x:.3f}"


def auroc(scores, labels):
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative, ties counting half. = Mann-Whitney U / (positives x negatives), U from the ranks
    of the positives among all scores (tied scores share their mean rank). None if a class is empty."""
    import numpy as np
    scores, positive = np.asarray(scores, dtype=float), np.asarray(labels) == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, which, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2  # ranks 1..n; a tied group shares the mean of its ranks
    rank_sum = mean_rank[which.reshape(-1)][positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_difference(groups, resamples=1000, seed=0):
    """AUROC(a) - AUROC(b) of two verifiers' step scores on the same steps, with its 95% paired
    bootstrap interval. groups: per problem, (scores a, scores b, labels) of all its samples' steps;
    a resample draws problems with replacement, keeping each problem's steps together (steps of one
    solution, and solutions of one problem, are not independent). None if a class is empty."""
    import numpy as np
    a, b, y = (np.concatenate([np.asarray(g[k], dtype=float) for g in groups]) for k in range(3))
    whole = auroc(a, y)
    if whole is None:
        return None
    starts = np.cumsum([0] + [len(g[2]) for g in groups])
    rng, diffs = np.random.default_rng(seed), []
    for _ in range(resamples):
        idx = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in rng.integers(0, len(groups), len(groups))])
        if (resampled := auroc(a[idx], y[idx])) is not None:  # a draw may hold one class only
            diffs.append(resampled - auroc(b[idx], y[idx]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return [whole - auroc(b, y), float(lo), float(hi)]


def phenomena_bins(max_train_d):
    """The difficulties where the o1 phenomena are judged: the harder half of the training range
    (2, 3 of 1..3; 3, 4 of 1..4), where the policy is neither always right nor always wrong."""
    return list(range(max_train_d // 2 + 1, max_train_d + 1))


def verdict(lo, hi):
    """A claim "A beats B" from the interval of A - B: shown when it lies above zero, not shown when
    below (B is better), within noise when it holds zero."""
    return "shown" if lo > 0 else "not shown" if hi < 0 else "within noise"


def write_json(path, obj):
    """Atomically (temporary file, then rename); indented, but a list of numbers on one line."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(_json_text(obj, 0) + "\n")
    os.replace(tmp, path)


def _json_text(obj, depth):
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {_json_text(v, depth + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, (list, tuple)) and obj and any(isinstance(v, (dict, list, tuple)) for v in obj):
        return "[\n" + ",\n".join(inner + _json_text(v, depth + 1) for v in obj) + f"\n{pad}]"
    return json.dumps(obj)

"""Stage 3 of the o1 recipe: reinforcement learning on the chain of thought.

"Through reinforcement learning, o1 learns to hone its chain of thought" (OpenAI, 2024). Here the
SFT policy writes solutions to training problems, the exact verifier (and, if asked, the process
reward model) scores them, and PPO (Schulman et al. 2017) moves the policy towards what was
rewarded, while a per-token KL penalty to the frozen SFT policy keeps it close to text it knows.

What this really is: a bandit problem dressed as a sequence. The outcome reward is one number on
the last token of a solution (1 right, 0 wrong, minus a penalty when the policy never writes
end-of-text); the critic (a second GPT with a scalar head) and GAE spread it back over the
tokens. --reward process replaces it by the PRM's judgement at each step end (its probability
that the chain is right so far, minus 1/2), so a wrong step is punished where it is written
(Lightman et al. 2023; Wang et al. 2023, Math-Shepherd); --reward both adds the two. --algo grpo drops the critic: G
samples per problem, each one's advantage is its reward standardised within its group, and the KL
term moves from the reward into the loss (Shao et al. 2024, DeepSeekMath, eq. 3-4). The details
(whitened advantages, clipped value loss, Adam eps, KL in the reward) follow Huang et al., "The N
implementation details of RLHF with PPO". No trick here is new; each is in one function below.

    python train_rl.py --preset tiny --out out/tiny                 # after train_sft.py (and train_prm.py)
    python train_rl.py --preset tiny --out out/tiny --reward both   # verifier outcome + PRM step rewards
    python train_rl.py --preset tiny --out out/tiny --algo grpo     # the critic-free variant
    python train_rl.py --preset tiny --out out/tiny --resume        # after a kill
    python train_rl.py --preset tiny --out out/tiny/selfcorrect --policy sft_w48  # from another SFT policy

The problems are drawn fresh from the training split at every iteration (not the ones SFT
memorised): the preset's difficulties (tiny: two thirds from the hardest trained bin, where RL has the
most to gain, a third from the easy ones, where an extra step is punished: results/rl/README.md), or
with --train-d '' each in proportion to its reward's variance under the SFT policy.
A collapse (entropy or length running away, unfinished solutions) or a fall in validation accuracy
(a gamed reward) stops the run with one line.

Reads DIR/data, DIR/sft/ckpt.pt and, when there, DIR/prm/ckpt.pt (the value model starts from
it; --reward process|both need it). Writes DIR/rl/ckpt.pt: the last policy, or validation's best if the run
was stopped (what search.py --policy rl reads), and everything --resume needs; and
DIR/rl/metrics.json: greedy accuracy per test difficulty bin before (SFT) and after (RL), and
the training log (reward, KL, entropy, length, accuracy per iteration; report.py plots it). The
test bins are only reported; the validation split (tiny: 128 problems; its dips between checkpoints are
noise, and picking the best of them cost the hard bin 0.005-0.055 on every outcome-reward run,
results/rl/README.md) only stops a run whose accuracy falls, and then its best is kept.
"""
import copy
import math
import os
import time
from types import SimpleNamespace

import torch
from tqdm import tqdm

from common import (PRESETS, UserError, autocast, count, evaluate_policy, load_optimizer, flops, paired_difference, parse, read_split, read_task,
                    run_cli, sample_and_verify, setup_device, stage_parser, write_json)
from data.task import PAD, parse_problem, prompt_text, sample_split
from data.tokenizer import encode, special_id
from model import load_checkpoint, model_from_checkpoint, save_checkpoint
from reward import step_ends, step_scores


# ----------------------------------------------------------------------------- the math
# Each function here has a test in tests/test_rl.py against values computed by hand.
# Per-token tensors are (B, T) in the layout of next-token targets: position t holds the token the
# policy chose after reading tokens 0..t; mask is 1 on response tokens, 0 on prompt and padding.

def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x, mask, eps=1e-8):
    """(x - mean) / std over the masked entries; zero elsewhere."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def kl_k1(logprobs, ref_logprobs):
    """KL(pi || ref) estimated from tokens sampled from pi: log pi - log ref (Schulman 2020, "k1").
    Unbiased, can be negative per token; it is the penalty that goes into the reward."""
    return logprobs - ref_logprobs


def kl_k3(logprobs, ref_logprobs):
    """The same KL, lower variance and never negative (Schulman 2020, "k3"):
    r - 1 - log r with r = ref / pi. GRPO's KL term (DeepSeekMath eq. 4); with pi the old policy
    and ref the new one it is PPO's "approximate KL" between consecutive policies."""
    log_ratio = ref_logprobs - logprobs
    return log_ratio.exp() - 1 - log_ratio


def gae(rewards, values, mask, lam, gamma=1.0):
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16), right to left:
        delta_t = r_t + gamma * V(s_t+1) - V(s_t),   A_t = delta_t + gamma * lam * A_t+1
    The state after the last response token is terminal: its value is 0. Returns the advantages
    and the returns A + V that the critic regresses on; both zero outside the mask."""
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_value = rewards.new_zeros(B)
    next_advantage = rewards.new_zeros(B)
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = advantage
        next_value, next_advantage = values[:, t] * mask[:, t], advantage
    return advantages, (advantages + values) * mask


def policy_loss(logprobs, old_logprobs, advantages, mask, clip):
    """PPO's clipped surrogate objective (Schulman et al. 2017, eq. 7), negated to be a loss:
        L = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A),   ratio = pi(a|s) / pi_old(a|s)
    Returns the token mean and the fraction of tokens where the clip bites (no gradient there). The
    mean is over all tokens of the minibatch, for GRPO too, where DeepSeekMath (eq. 3) averages each
    sample's tokens first (1/|o_i|): every token weighs the same, as in DAPO (Yu et al. 2025)."""
    ratio = (logprobs - old_logprobs).exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
    loss = masked_mean(-torch.min(unclipped, clipped), mask)
    return loss, masked_mean((clipped < unclipped).float(), mask)


def value_loss(values, old_values, returns, mask, clip):
    """Clipped value loss (Huang et al., detail 9): the new value may not move more than clip
    from the value at rollout time unless that makes the error larger.
        L = 1/2 max((V - R)^2, (clip(V, V_old - eps, V_old + eps) - R)^2)"""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)


def grpo_advantages(rewards, group_size, eps=1e-6):
    """GRPO (DeepSeekMath, section 4.1.2): each sample's reward standardised within its group of
    G samples of the same problem, (r - mean) / std. rewards: (N * G,), groups consecutive.
    A group whose samples all scored the same teaches nothing: its advantages are 0."""
    groups = rewards.view(-1, group_size)
    mean, std = groups.mean(1, keepdim=True), groups.std(1, unbiased=False, keepdim=True)
    return ((groups - mean) / (std + eps)).view(-1)


def assemble_rewards(mask, scores, step_rewards, kl, kl_coef):
    """Per-token rewards (B, T): -kl_coef * KL on every response token, the outcome score (B,) on
    the last response token, plus step_rewards (B, T) (the PRM's, zero off the step ends, or
    None); nothing on prompt or padding."""
    mask = mask.float()
    rewards = torch.where(mask.bool(), -kl_coef * kl, 0.0)
    last = (mask.cumsum(1) == mask.sum(1, keepdim=True)) & mask.bool()  # the last response token
    rewards = rewards + last * scores[:, None]
    if step_rewards is not None:
        rewards = rewards + torch.where(mask.bool(), step_rewards, 0.0)
    return rewards


# ----------------------------------------------------------------------------- rollouts and rewards

def response_batch(prompts, responses, device):
    """Prompt + response ids right-padded into tokens (B, T), and mask (B, T-1): 1 where the
    next-token target is a response token, the tokens the policy chose."""
    T = max(len(p) + len(r) for p, r in zip(prompts, responses))
    tokens = torch.full((len(prompts), T), special_id(PAD), dtype=torch.long)
    mask = torch.zeros(len(prompts), T - 1)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        tokens[i, :len(p) + len(r)] = torch.tensor(p + r)
        mask[i, len(p) - 1:len(p) + len(r) - 1] = 1
    return tokens.to(device), mask.to(device)


def token_logprobs(model, tokens, temperature):
    """log pi(target | prefix) under softmax(logits / temperature), the distribution the tokens
    were sampled from, and its entropy: both (B, T-1)."""
    with autocast(tokens.device):
        logits = model(tokens[:, :-1])  # (B, T-1, vocab)
    logprobs = torch.log_softmax(logits.float() / temperature, dim=-1)
    chosen = logprobs.gather(-1, tokens[:, 1:, None]).squeeze(-1)
    entropy = -(logprobs.exp() * logprobs).sum(-1)
    return chosen, entropy


def prm_step_rewards(prm, prompts, responses, T):
    """The process reward: at each step end of each solution (every end-of-step token, and the
    end-of-text that closes the answer line) the PRM's probability that the chain is right so
    far, minus 1/2; zero elsewhere. (B, T) in the targets' layout: a token at sequence position
    i is the target at i - 1. Centred, so that a right step earns reward and a wrong one costs it."""
    sequences = [p + r for p, r in zip(prompts, responses)]
    probabilities = step_scores(prm, sequences, [len(p) for p in prompts])
    rewards = torch.zeros(len(sequences), T)
    for i, (s, p) in enumerate(zip(sequences, prompts)):
        for position, probability in zip(step_ends(s, len(p)), probabilities[i]):
            rewards[i, position - 1] = probability - 0.5
    return rewards


def verifier_scores(verdicts, reward, unfinished_penalty):
    """The verifier's score per solution: 1 right, 0 wrong; -penalty without end-of-text.
    With --reward process the answer is judged by the PRM instead, at the end-of-text (its last
    step end); only the penalty stays."""
    scores = []
    for v in verdicts:
        if not v.finished:
            scores.append(-unfinished_penalty)
        else:
            scores.append(float(v.answer_correct) if reward != "process" else 0.0)
    return torch.tensor(scores)


@torch.no_grad()
def rollout(policy, records, task, temperature, generator):
    """Sample one solution per record through the KV cache; check each with the verifier."""
    prompts = [encode(prompt_text(r["problem"])) for r in records]
    results = sample_and_verify(policy, prompts, [parse_problem(r["problem"], task.p) for r in records], task.p, temperature,
                                generator, batch_size=len(prompts))
    return prompts, [out for out, _, _ in results], [verdict for _, _, verdict in results]


@torch.no_grad()
def build_batch(policy, reference, critic, prm, prompts, responses, scores, hp):
    """Everything the update needs from one set of rollouts: the tokens, the log-probabilities
    under the sampling policy and the reference, the rewards, the advantages (and for PPO the
    values and returns). Returns the batch and the numbers to log."""
    tokens, mask = response_batch(prompts, responses, policy.wte.weight.device)
    old_logprobs, _ = token_logprobs(policy, tokens, hp.temperature)
    ref_logprobs, _ = token_logprobs(reference, tokens, hp.temperature)
    kl = kl_k1(old_logprobs, ref_logprobs)  # (B, T-1)
    scores = scores.to(tokens.device)
    step_rewards = prm_step_rewards(prm, prompts, responses, mask.size(1)).to(mask.device) if prm is not None else None
    task_rewards = assemble_rewards(mask, scores, step_rewards, kl, kl_coef=0.0)
    batch = dict(tokens=tokens, mask=mask, old_logprobs=old_logprobs, ref_logprobs=ref_logprobs)
    if hp.algo == "ppo":
        rewards = assemble_rewards(mask, scores, step_rewards, kl, hp.kl_coef)
        with autocast(tokens.device):
            values = critic(tokens[:, :-1], head="scalar").float() * mask  # V(s_t), (B, T-1)
        advantages, returns = gae(rewards, values, mask, hp.lam)
        batch.update(advantages=masked_whiten(advantages, mask), values=values, returns=returns)
    else:  # GRPO: one advantage per sample, on each of its tokens; the KL goes into the loss
        batch.update(advantages=grpo_advantages(task_rewards.sum(1), hp.group_size)[:, None] * mask)
    log = {"reward": task_rewards.sum(1).mean().item(), "tokens": tokens.numel(),
           "kl": (kl * mask).sum(1).mean().item(),  # nats per solution, policy vs reference
           "length": mask.sum(1).mean().item()}
    return batch, log


# ----------------------------------------------------------------------------- the update

def ppo_update(policy, critic, policy_optimizer, critic_optimizer, batch, hp, generator, update_policy=True):
    """hp.epochs passes over the rollouts in shuffled minibatches of hp.minibatch solutions: the
    clipped policy loss (GRPO: plus kl_coef * KL to the reference), and for PPO the clipped value
    loss on the critic. Raises FloatingPointError on a NaN or Inf loss or gradient, before it is
    applied (the checkpoint on disk is older still)."""
    logs = {k: [] for k in ("policy_loss", "clip_fraction", "approx_kl", "entropy", "value_loss")}
    n = batch["tokens"].size(0)
    for _ in range(hp.epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, hp.minibatch):
            mb = {k: v[order[start:start + hp.minibatch].to(v.device)] for k, v in batch.items()}
            mask = mb["mask"]
            if update_policy:
                logprobs, entropy = token_logprobs(policy, mb["tokens"], hp.temperature)
                loss, clip_fraction = policy_loss(logprobs, mb["old_logprobs"], mb["advantages"], mask, hp.clip)
                if hp.algo == "grpo":
                    loss = loss + hp.kl_coef * masked_mean(kl_k3(logprobs, mb["ref_logprobs"]), mask)
                step(loss, policy, policy_optimizer, "policy", hp.max_grad_norm)
                logs["policy_loss"].append(loss.item())
                logs["clip_fraction"].append(clip_fraction.item())
                logs["approx_kl"].append(masked_mean(kl_k3(mb["old_logprobs"], logprobs.detach()), mask).item())
                logs["entropy"].append(masked_mean(entropy.detach(), mask).item())
            if critic is not None:
                with autocast(mask.device):
                    values = critic(mb["tokens"][:, :-1], head="scalar").float()
                loss = value_loss(values, mb["values"], mb["returns"], mask, hp.value_clip)
                step(loss, critic, critic_optimizer, "value", hp.max_grad_norm)
                logs["value_loss"].append(loss.item())
    return {k: sum(v) / len(v) for k, v in logs.items() if v}


def iteration_flops(params, tokens, hp, critic, prm, warming):
    """The compute of one iteration (2 x params per token forward, 6 forward and backward):
    sampling the rollouts, the no-grad passes of the policy, the reference, the PRM and the
    critic, and hp.epochs training passes of the policy (not while the critic warms up) and the
    critic. Padding counted: it is computed."""
    forward = 1 + 2 + (critic is not None) + (prm is not None)  # sampling (prompt included), old, ref, values, PRM
    trained = hp.epochs * ((not warming) + (critic is not None))
    return flops(params, trained_tokens=tokens * trained, forward_tokens=tokens * forward)


def runaway(history):
    """Why training has collapsed, in a few words, or None. Judged on the policy iterations,
    against the first: the policy's entropy more than three times its first value and up by more
    than 0.5 nats per token (it has turned to noise), its solutions more than twice as long (it
    babbles: with step rewards, farming them), or fewer than half as many of them finished."""
    iterations = [h for h in history if h["phase"] == "policy"]
    if len(iterations) < 2:
        return None
    first, now = iterations[0], iterations[-1]
    if now["entropy"] > max(3 * first["entropy"], first["entropy"] + 0.5):
        return f"entropy {now['entropy']:.2f} nats per token, from {first['entropy']:.2f}"
    if now["length"] > 2 * first["length"]:
        return f"solutions {now['length']:.0f} tokens long, from {first['length']:.0f}"
    if now["finished"] < first["finished"] / 2:
        return f"{now['finished']:.0%} of the solutions finished, from {first['finished']:.0%}"
    return None


def fell(val_log, n):
    """Validation's alarm, in a few words, or None: greedy accuracy on the n validation problems more than
    two standard errors (binomial, at the best's accuracy) below the best so far. The reward still rose
    while the task got worse: a gamed reward (PPO on the PRM's step rewards alone: results/rl/README.md).
    Smaller dips are noise, not a signal to pick an earlier policy by (the last one is kept)."""
    best, now = max(val_log, key=lambda v: v["accuracy"]), val_log[-1]
    margin = 2 * math.sqrt(best["accuracy"] * (1 - best["accuracy"]) / n)
    if now["accuracy"] < best["accuracy"] - margin:
        return (f"validation accuracy {now['accuracy']:.3f}, more than two standard errors ({margin:.3f}) below "
                f"its best, {best['accuracy']:.3f} at iteration {best['iteration']}")
    return None


def step(loss, model, optimizer, name, max_grad_norm):
    """Backward, gradient clipping and one optimizer step; a NaN or Inf loss or gradient raises
    FloatingPointError before the step changes anything."""
    check_finite(f"{name} loss", loss)
    loss.backward()
    check_finite(f"{name} gradient norm", torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def check_finite(name, value):
    if not torch.isfinite(value).all():
        raise FloatingPointError(f"{name} is {value.item()}")


def make_optimizer(model, lr):
    """Adam with eps 1e-5 (Huang et al., detail 2), constant learning rate, no weight decay."""
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr, eps=1e-5)


# ----------------------------------------------------------------------------- problems

def new_problems(task, weights, n, seed, generator):
    """n problems drawn fresh from the training split (never val or test), difficulty d with
    probability weights[d]: RL practises on problems it has not memorised in SFT."""
    ds = sorted(weights)
    picks = torch.multinomial(torch.tensor([weights[d] for d in ds], dtype=torch.float), n, replacement=True, generator=generator)
    return [{"problem": pr.text(), "difficulty": d} for i, d in enumerate(ds)
            for pr in sample_split("train", int((picks == i).sum()), [d], task, seed)]


def training_mix(policy, task, device, n_per_difficulty, seed):
    """Where to spend the rollouts: difficulty d in proportion to p_d (1 - p_d), the variance of
    the outcome reward under the SFT policy's greedy accuracy p_d on n_per_difficulty new problems.
    Where every sample gets the same reward there is nothing to learn (GRPO's advantage is 0)."""
    sample = [{"problem": pr.text(), "difficulty": d} for d in range(1, task.max_train_d + 1)
              for pr in sample_split("train", n_per_difficulty, [d], task, f"rl-mix-{seed}")]
    result = evaluate_policy(policy, sample, task, device, desc="training mix")
    variance = {int(d): a * (1 - a) for d, a in result["accuracy_by_difficulty"].items()}
    total = sum(variance.values())
    weights = {d: v / total if total else 1 / len(variance) for d, v in variance.items()}
    return weights, {k: result[k] for k in ("accuracy_by_difficulty", "problems_by_difficulty", "interval_by_difficulty")}


def listed_mix(train_d):
    """--train-d: each difficulty as often as it is listed (3,3,1: d = 3 twice as often as d = 1)."""
    return {d: train_d.count(d) / len(train_d) for d in sorted(set(train_d))}


# ----------------------------------------------------------------------------- main

def parse_args(argv=None):
    parser = stage_parser(__doc__)
    parser.add_argument("--algo", default="ppo", choices=("ppo", "grpo"), help="PPO with a critic, or GRPO (default: ppo)")
    parser.add_argument("--reward", default="outcome", choices=("outcome", "process", "both"),
                        help="verifier outcome, PRM step scores, or both (default: outcome)")
    parser.add_argument("--iterations", type=count(), help="policy updates, each on fresh rollouts (default: the preset's)")
    parser.add_argument("--rollouts", type=count(), help="solutions sampled per iteration (default: the preset's)")
    parser.add_argument("--minibatch", type=count(), help="solutions per gradient step (default: the preset's)")
    parser.add_argument("--lr", type=float, help="policy learning rate (default: the preset's)")
    parser.add_argument("--critic-lr", type=float, help="value model learning rate (default: 10x the policy's)")
    parser.add_argument("--epochs", type=count(), help="passes over each iteration's rollouts (default: the preset's)")
    parser.add_argument("--group-size", type=count(), help="GRPO: samples per problem (default: the preset's)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default: the preset's)")
    parser.add_argument("--kl-coef", type=float, help="beta, weight of the KL to the SFT policy (default: the preset's)")
    parser.add_argument("--lam", type=float, help="GAE lambda; gamma is 1 (default: the preset's)")
    parser.add_argument("--clip", type=float, help="PPO clip epsilon (default: the preset's)")
    parser.add_argument("--value-clip", type=float, help="value loss clip (default: the preset's)")
    parser.add_argument("--max-grad-norm", type=float, help="gradient clipping (default: the preset's)")
    parser.add_argument("--critic-warmup", type=count(0), help="PPO: critic-only iterations first (default: the preset's)")
    parser.add_argument("--unfinished-penalty", type=float, help="subtracted from a solution with no end-of-text (default: the preset's)")
    parser.add_argument("--eval-every", type=count(), help="iterations between validations and checkpoints (default: the preset's)")
    parser.add_argument("--policy", default="sft", help="the SFT stage RL starts from: DIR/sft, or another such as "
                        "DIR/sft_w48 (default: sft); writes DIR/rl, or DIR/rl_NAME for another")
    parser.add_argument("--train-d", type=lambda s: tuple(int(x) for x in s.split(",") if x),
                        help="training difficulties, comma-separated, each as often as listed (3,3,1: d = 3 twice as often); "
                             "'' for each in proportion to p (1 - p), "
                             "p the SFT accuracy (default: the preset's)")
    parser.add_argument("--resume", action="store_true", help="continue from DIR/rl/ckpt.pt")
    args = parse(parser, argv, lambda preset, args: preset.rl)
    args.critic_lr = 10 * args.lr if args.critic_lr is None else args.critic_lr
    if args.algo == "grpo" and args.rollouts % args.group_size:
        parser.error(f"--rollouts {args.rollouts} must be a multiple of --group-size {args.group_size}")
    if args.temperature <= 0:  # the policy gradient needs a distribution to sample from, not greedy decoding
        parser.error(f"--temperature {args.temperature}: RL samples its rollouts, give a temperature above 0")
    return args


def load_models(args, device):
    """The policy and the frozen reference (both the SFT policy), the frozen PRM (process
    rewards only) and the value model (PPO only): from the PRM when there is one, else from the
    SFT trunk with its zero-initialised scalar head."""
    sft = load_checkpoint(os.path.join(args.out, args.policy, "ckpt.pt"),
                          expect_config=PRESETS[args.preset].model_config() if args.policy == "sft" else None)
    policy = model_from_checkpoint(sft, attn=args.attn).to(device)
    reference = model_from_checkpoint(sft, attn=args.attn).to(device).requires_grad_(False)
    prm_path = os.path.join(args.out, "prm", "ckpt.pt")
    if args.reward != "outcome" and not os.path.exists(prm_path):
        raise UserError(f"--reward {args.reward} needs the process reward model at {prm_path}: run train_prm.py first")
    prm_ckpt = load_checkpoint(prm_path) if os.path.exists(prm_path) else None
    prm = model_from_checkpoint(prm_ckpt, attn=args.attn).to(device).requires_grad_(False) if args.reward != "outcome" else None
    critic, critic_init = None, None
    if args.algo == "ppo":
        critic_init = "prm" if prm_ckpt is not None else "sft"
        critic = model_from_checkpoint(prm_ckpt or sft, attn=args.attn).to(device)
        if prm_ckpt is None:
            torch.nn.init.zeros_(critic.scalar_head.weight)
            torch.nn.init.zeros_(critic.scalar_head.bias)
    return policy, reference, prm, critic, critic_init


def start_or_resume(args, m, ckpt_path, task, val, device):
    """Iteration, training log, validation log, training mix: from the checkpoint with --resume,
    else fresh, with the training mix measured and the SFT policy validated (iteration 0)."""
    if not args.resume:
        if os.path.exists(ckpt_path):  # an earlier run's: never to be taken for this run's last good checkpoint
            os.remove(ckpt_path)
        mix, mix_accuracy = training_mix(m.reference, task, device, max(1, PRESETS[args.preset].eval_problems // 2), args.seed)
        mix = listed_mix(args.train_d) if args.train_d else mix
        return 0, [], [{"iteration": 0, "accuracy": evaluate_policy(m.reference, val, task, device)["accuracy"]}], mix, mix_accuracy
    ckpt = load_checkpoint(ckpt_path, expect_config=m.policy.cfg)
    if (ckpt["algo"], ckpt["reward"]) != (args.algo, args.reward):
        raise UserError(f"{ckpt_path} is a --algo {ckpt['algo']} --reward {ckpt['reward']} run: resume it with those flags")
    m.policy.load_state_dict(ckpt["model"])
    m.best.load_state_dict(ckpt["best"])
    load_optimizer(m.policy_optimizer, ckpt["policy_optimizer"])
    if m.critic is not None:
        m.critic.load_state_dict(ckpt["critic"])
        load_optimizer(m.critic_optimizer, ckpt["critic_optimizer"])
    print(f"rl: resuming from iteration {ckpt['step']}")
    return ckpt["step"], ckpt["history"], ckpt["val_log"], ckpt["difficulties"], ckpt["mix_accuracy"]


def iteration(it, args, m, task, mix, warming, device, ckpt_path):
    """One iteration: new problems, rollouts, rewards, advantages, the update. Returns its log row.
    Everything random in it is a function of (seed, iteration): a resumed run is the same run."""
    generator = torch.Generator().manual_seed(args.seed * 1_000_003 + it)
    sampler = torch.Generator(device).manual_seed(args.seed * 1_000_003 + it)
    n_problems = args.rollouts // args.group_size if args.algo == "grpo" else args.rollouts
    records = new_problems(task, mix, n_problems, f"rl-{args.seed}-{it}", generator)
    if args.algo == "grpo":
        records = [r for r in records for _ in range(args.group_size)]  # each group consecutive
    prompts, responses, verdicts = rollout(m.policy, records, task, args.temperature, sampler)
    scores = verifier_scores(verdicts, args.reward, args.unfinished_penalty)
    batch, log = build_batch(m.policy, m.reference, m.critic, m.prm, prompts, responses, scores, args)
    try:
        stats = ppo_update(m.policy, m.critic, m.policy_optimizer, m.critic_optimizer, batch, args, generator, update_policy=not warming)
    except FloatingPointError as e:
        kept = f"{ckpt_path} (iteration {torch.load(ckpt_path, weights_only=True)['step']})" if os.path.exists(ckpt_path) else "no checkpoint yet"
        raise UserError(f"stopped at iteration {it + 1}: {e}; kept the last good checkpoint, {kept}; try a lower --lr")
    log["flops"] = iteration_flops(m.n_params, log["tokens"], args, m.critic, m.prm, warming)
    return {"iteration": it + 1, "phase": "critic warm-up" if warming else "policy",
            "accuracy": sum(v.answer_correct for v in verdicts) / len(verdicts),
            "finished": sum(v.finished for v in verdicts) / len(verdicts), **log, **stats}


def progress(h):
    return (f"reward {h['reward']:.2f} acc {h['accuracy']:.2f} kl {h['kl']:.3f} "
            + (f"clip {h['clip_fraction']:.2f} akl {h['approx_kl']:.4f} ent {h['entropy']:.2f} " if "entropy" in h else "")
            + (f"vloss {h['value_loss']:.3f} " if "value_loss" in h else "") + f"len {h['length']:.0f}")


def main(argv=None, stop_after=None):
    """stop_after: end the run after that many iterations, as a kill would (tests)."""
    # ---- inputs, models, and the state of an earlier run
    args = parse_args(argv)
    t0, preset = time.time(), PRESETS[args.preset]
    task = read_task(args.out)
    if task != preset.task:
        raise UserError(f"{args.out}/data was prepared for another preset: run data/prepare.py --preset {args.preset} --out {args.out}")
    d = setup_device(args.device)
    if d.world > 1:
        raise UserError("train_rl.py runs in one process: start it with python, not torchrun")
    val, test = read_split(args.out, "val")[:preset.eval_problems], read_split(args.out, "test")
    torch.manual_seed(args.seed)
    m = SimpleNamespace(**dict(zip(("policy", "reference", "prm", "critic", "critic_init"), load_models(args, d.device))))
    m.policy_optimizer = make_optimizer(m.policy, args.lr)
    m.critic_optimizer = make_optimizer(m.critic, args.critic_lr) if m.critic is not None else None
    m.best = copy.deepcopy(m.policy).requires_grad_(False)  # validation's best so far: what a stopped run keeps
    m.n_params = m.policy.flop_params()
    warmup = args.critic_warmup if args.algo == "ppo" else 0
    stage = "rl" if args.policy == "sft" else f"rl_{args.policy}"
    ckpt_path = os.path.join(args.out, stage, "ckpt.pt")
    start, history, val_log, mix, mix_accuracy = start_or_resume(args, m, ckpt_path, task, val, d.device)
    print(f"rl: {args.algo}, reward {args.reward}, value model from {m.critic_init or 'none'}; training difficulties "
          f"{', '.join(f'{k}: {w:.2f}' for k, w in mix.items())} of the rollouts (SFT greedy accuracy "
          f"{', '.join(f'{k}: {v:.2f}' for k, v in mix_accuracy['accuracy_by_difficulty'].items())})")

    def checkpoint(it):  # the policy as it is now: the one kept, what search.py reads and --resume continues
        save_checkpoint(ckpt_path, m.policy, step=it, best=m.best.state_dict(), policy_optimizer=m.policy_optimizer.state_dict(),
                        critic=m.critic.state_dict() if m.critic is not None else None,
                        critic_optimizer=m.critic_optimizer.state_dict() if m.critic is not None else None,
                        history=history, val_log=val_log, difficulties=mix, mix_accuracy=mix_accuracy,
                        algo=args.algo, reward=args.reward, preset=args.preset)

    # ---- train; validate and checkpoint every eval_every iterations; stop at a collapse or a fall
    stopped, total = None, warmup + args.iterations
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"rl {args.algo}")
    for it in bar:
        history.append(iteration(it, args, m, task, mix, it < warmup, d.device, ckpt_path))
        bar.set_postfix_str(progress(history[-1]))
        done = it + 1 - warmup
        stopped = runaway(history)
        if not stopped and it >= warmup and (done % args.eval_every == 0 or it + 1 == total):
            val_log.append({"iteration": done, "accuracy": evaluate_policy(m.policy, val, task, d.device)["accuracy"]})
            bar.write(f"rl iteration {done}: val greedy accuracy {val_log[-1]['accuracy']:.3f}")
            if max(val_log, key=lambda v: v["accuracy"]) is val_log[-1]:  # the first of equals stays
                m.best.load_state_dict(m.policy.state_dict())
            stopped = fell(val_log, len(val))
            if not stopped:
                checkpoint(it + 1)
        if stopped:  # the decline began before it showed: keep validation's best so far (the SFT policy if none beat it)
            stopped = f"stopped at iteration {done}: {stopped}"
            bar.write(f"rl: {stopped}; kept validation's best, the policy of iteration "
                      f"{max(val_log, key=lambda v: v['accuracy'])['iteration']} ({ckpt_path})")
            m.policy.load_state_dict(m.best.state_dict())
            checkpoint(it + 1)
            break
        if stop_after is not None and it + 1 == stop_after:
            return None
    kept = max(val_log, key=lambda v: v["accuracy"]) if stopped else val_log[-1]  # the policy in m.policy and on disk
    return write_metrics(args, m, stage, task, test, d.device, dict(
        critic_warmup=warmup, value_model_init=m.critic_init, training_difficulties=mix, training_mix_sft_accuracy=mix_accuracy,
        kept_iteration=kept["iteration"], val_log=val_log, stopped=stopped, train_flops=sum(h["flops"] for h in history), training_log=history), t0)


def write_metrics(args, m, stage, task, test, device, run, t0):
    """The SFT policy and the kept RL policy on every test bin; DIR/STAGE/metrics.json."""
    before = evaluate_policy(m.reference, test, task, device, desc="sft eval")
    after = evaluate_policy(m.policy, test, task, device, desc="rl eval")
    run["wall_time_s"] = time.time() - t0
    in_range = [k for k in after["accuracy_by_difficulty"] if int(k) <= task.max_train_d]
    metrics = {
        "stage": stage, "policy": args.policy, "preset": args.preset, "device": str(device), "algo": args.algo, "reward": args.reward,
        "iterations": args.iterations, "rollouts_per_iteration": args.rollouts,
        "hyperparameters": {k: getattr(args, k) for k in ("lr", "critic_lr", "epochs", "minibatch", "group_size", "temperature",
                                                          "kl_coef", "lam", "clip", "value_clip", "unfinished_penalty")},
        **run,
        "test_accuracy": sum(after["accuracy_by_difficulty"][k] for k in in_range) / len(in_range),
        "sft_test_accuracy": sum(before["accuracy_by_difficulty"][k] for k in in_range) / len(in_range),
        **after,
        "before": before,  # the SFT policy on the same test bins
    }
    write_json(os.path.join(args.out, stage, "metrics.json"), metrics)
    print(comparison_table(before, after, task.max_train_d))
    print(f"rl: {len(run['training_log'])} iterations in {run['wall_time_s']:.0f}s, kept iteration {run['kept_iteration']}; "
          f"in-range test accuracy {metrics['sft_test_accuracy']:.3f} (SFT) -> {metrics['test_accuracy']:.3f} (RL), "
          f"metrics in {args.out}/{stage}/metrics.json")
    return metrics


def comparison_table(before, after, train_max_d):
    """Per bin: SFT and RL greedy accuracy on the same test problems, and the paired interval of the change."""
    lines = ["| difficulty | SFT accuracy | RL accuracy | change (95% paired interval) |", "|---:|---:|---:|---:|"]
    for k, a in after["accuracy_by_difficulty"].items():
        mine = [i for i, d in enumerate(after["outcomes"]["difficulty"]) if str(d) == k]
        change, lo, hi = paired_difference([after["outcomes"]["correct"][i] for i in mine],
                                           [before["outcomes"]["correct"][i] for i in mine])
        ood = " (beyond training)" if int(k) > train_max_d else ""
        lines.append(f"| {k}{ood} | {before['accuracy_by_difficulty'][k]:.3f} | {a:.3f} | {change:+.3f} ({lo:+.3f}, {hi:+.3f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    run_cli(main, resumable=True)

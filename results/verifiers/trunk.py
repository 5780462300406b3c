"""What PRM fine-tuning keeps of the SFT trunk (issue 17, point 1): train_prm.py's PRM of f4cccde (oracle
labels on every token, the same 8192 policy samples, 300 steps) with one thing changed, judged on
train_prm.py's own evaluation samples (the same draw as the pipeline's prm/metrics.json).

    OMP_NUM_THREADS=1 python results/verifiers/trunk.py DIR NAME [aux=0] [muon_lr=0.02] [lr=1e-3]
        [steps=300] [freeze=0] [seed=0] [train_seed=0] [surprise=0] [problems=8192] [flawed=0] [depth=0]

aux=L     adds L x the next-token cross-entropy on the solution tokens the oracle calls right: the
          PRM keeps predicting what a right solution writes next, as the SFT policy did
muon_lr   the blocks' matrices' peak learning rate (lower: the trunk moves less)
freeze=1  only the scalar head trains: a linear probe of what the SFT trunk already knows
surprise=1  the PRM's logit at token t is its head's plus log pi(x_t | x_<t) under its own LM head
          (at the start, the SFT policy's: the PRM starts as the confidence verifier)

Writes results/verifiers/runs/trunk_NAME.json and prints step AUROC and the first error located per bin.
"""
import dataclasses
import json
import os
import pickle
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo root
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # diagnose.py

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import reward  # noqa: E402
from data.task import parse_problem, prompt_text  # noqa: E402
from data.tokenizer import encode  # noqa: E402
from data.verify import verify  # noqa: E402
import train_prm as tp  # noqa: E402
from common import PRESETS, lr_at, make_optimizer, read_split, read_task  # noqa: E402
from model import GPT, load_checkpoint, model_from_checkpoint  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def training_samples(out, policy, p, seed, problems):
    """train_prm.py's step 1 (one sample of each of the first `problems` training problems), cached in DIR/prm."""
    path = os.path.join(out, "prm", f"trunk_train_{problems}.pkl")
    if os.path.exists(path):
        with open(path, "rb") as f:
            return pickle.load(f)
    cfg = PRESETS["tiny"].prm
    records = read_split(out, "train")[:problems]
    train = [g[0] for g in tp.sample_solutions(policy, records, 1, cfg.temperature, p, torch.Generator().manual_seed(seed),
                                               cfg.gen_batch, "sample")]
    with open(path, "wb") as f:
        pickle.dump(train, f)
    return train


def flawed_samples(out, p, n):
    """n reference solutions of the last n training problems, each with one wrong operand value,
    miscopied operation or wrong result (diagnose.flawed_solution_text), judged by the verifier."""
    import diagnose
    diagnose.FLAWS = ("result", "operand", "definition")  # the mistakes the PRM passes (missed.py)
    rng, out_samples = random.Random(0), []
    for r in read_split(out, "train")[-n:]:
        problem = parse_problem(r["problem"], p)
        text = diagnose.flawed_solution_text(problem, p, rng)
        solution = encode(text)
        out_samples.append(tp.judge(r, encode(prompt_text(r["problem"])), solution, [0.0] * len(solution), verify(problem, text, p), p))
    return out_samples


def deeper(sft, extra):
    """The SFT policy with `extra` new blocks on top, each adding zero to the residual stream at
    the start (its output projections zeroed): the same function, more capacity to learn."""
    model = GPT(dataclasses.replace(sft["config"], n_layer=sft["config"].n_layer + extra))
    missing, unexpected = model.load_state_dict(sft["model"], strict=False)
    assert not unexpected and all(k.startswith("blocks.") for k in missing)
    for block in model.blocks[sft["config"].n_layer:]:
        torch.nn.init.zeros_(block.attn.proj.weight)
        torch.nn.init.zeros_(block.mlp[2].weight)
    return model


def reward_logits(model, x, surprise):
    """The scalar head's logits (B, T), plus (surprise) log pi(x_t | x_<t) under the model's own LM head."""
    logits, scores = model(x, head="both")
    if surprise:
        lp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, x[:, 1:, None]).squeeze(-1)
        scores = scores + torch.cat([torch.zeros_like(lp[:, :1]), lp], 1)
    return logits, scores


def train(model, examples, cfg):
    """train_prm.train_reward_model, plus the optional next-token loss on the right tokens."""
    optimizer = make_optimizer(model, cfg["lr"], cfg["muon_lr"])
    g = torch.Generator().manual_seed(cfg["seed"] + cfg["train_seed"])  # the batches
    model.train()
    for step in range(cfg["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg["steps"], group["peak_lr"], max(1, cfg["steps"] // 20))
        x, targets = tp.reward_batch([examples[i] for i in torch.randint(len(examples), (64,), generator=g)], "cpu")
        logits, scores = reward_logits(model, x, cfg["surprise"])
        scored = targets >= 0
        loss = F.binary_cross_entropy_with_logits(scores[scored], targets[scored])
        if cfg["aux"]:
            right = targets[:, 1:] == 1  # position t predicts token t + 1
            loss = loss + cfg["aux"] * F.cross_entropy(logits[:, :-1][right], x[:, 1:][right])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == cfg["steps"] - 1:
            print(f"step {step}: loss {loss.item():.3f}", flush=True)
    model.eval()


def main():
    out, name = sys.argv[1], sys.argv[2]
    cfg = dict(aux=0.0, muon_lr=0.02, lr=1e-3, steps=300, freeze=0, seed=0, train_seed=0, surprise=0, problems=8192, flawed=0, depth=0)
    for a in sys.argv[3:]:
        key, value = a.split("=")
        cfg[key] = type(cfg[key])(value)
    t0, preset, task = time.time(), PRESETS["tiny"], read_task(out)
    torch.manual_seed(cfg["seed"])
    sft = load_checkpoint(os.path.join(out, "sft", "ckpt.pt"))
    policy = model_from_checkpoint(sft).eval()
    samples = training_samples(out, policy, task.p, cfg["seed"], cfg["problems"])
    if cfg["flawed"]:  # reference solutions with one copying or arithmetic mistake, on other problems
        samples = samples + flawed_samples(out, task.p, cfg["flawed"])
    examples = tp.token_examples(samples, [tp.oracle_token_labels(s, task.p) for s in samples])
    prm = deeper(sft, cfg["depth"]) if cfg["depth"] else model_from_checkpoint(sft)
    if cfg["freeze"]:
        for n, w in prm.named_parameters():
            w.requires_grad_(n.startswith("scalar_head"))
    train(prm, examples, cfg)
    if cfg["surprise"]:  # the PRM's probabilities at every token, its own surprise included
        reward.scalar_probabilities = lambda m, seqs, batch_size=256: [
            torch.sigmoid(reward_logits(m, torch.tensor([q]), True)[1][0]).detach() for q in seqs]
    judged_on = torch.Generator().manual_seed(cfg["seed"] + tp.EVAL_STREAM)  # train_prm.py's evaluation draw
    ev, bins = tp.evaluation_samples(policy, prm, prm, read_split(out, "test"), preset.prm.eval_problems, preset.prm.eval_samples,
                                     preset.prm.temperature, task.p, judged_on, preset.prm.gen_batch)
    table = tp.verifier_table(ev, bins)
    result = {"config": cfg, "out": out, "seconds": time.time() - t0, "verifiers_by_difficulty": table}
    os.makedirs(os.path.join(HERE, "runs"), exist_ok=True)
    with open(os.path.join(HERE, "runs", f"trunk_{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    for key in ("prm", "confidence"):
        print(f"{name} {key:10s}", "  ".join(f"d{b}: {r['step_auroc_' + key]:.3f}/{r[key + '_first_error_located_rate']:.2f}"
                                              for b, r in table.items()))


if __name__ == "__main__":
    main()

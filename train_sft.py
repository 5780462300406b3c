"""Stage 1 of the o1 recipe: chain-of-thought supervised fine-tuning.

Before a model can learn to reason by reinforcement it must be able to write a chain of thought
at all. Here a GPT starts from random weights (so this is its pretraining too) and learns, by
next-token prediction, to write the step-by-step solutions of data/prepare.py. The loss is on
the solution tokens only: the problem is given, not predicted. The result is the policy that
the reward models judge (train_prm.py), that PPO improves (train_rl.py) and that search.py
spends test-time compute with.

    python data/prepare.py --preset tiny --out out/tiny
    python train_sft.py    --preset tiny --out out/tiny        # add --resume after a kill
    torchrun --nproc_per_node 2 train_sft.py --preset tiny     # the same run, data-parallel

Writes DIR/sft/ckpt.pt (weights, optimizer, step: --resume continues exactly) and
DIR/sft/metrics.json: greedy accuracy and step accuracy per difficulty bin, from the verifier.
"""
import contextlib
import os
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from common import (PRESETS, UserError, accuracy_table, autocast, count, encode_examples, load_optimizer, evaluate_policy, flops, lr_at,
                    make_batch, make_optimizer, parse, read_split, read_task, run_cli, setup_device, stage_parser, teardown,
                    write_json)
from model import GPT, load_checkpoint, save_checkpoint


def batch_indices(seed, step, n_examples, batch_size):
    """The examples of one optimizer step: a function of (seed, step) alone, so a resumed run
    and a run on any number of processes see exactly the same batches."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(n_examples, (batch_size,), generator=g).tolist()


def parse_args(argv):
    parser = stage_parser(__doc__)
    parser.add_argument("--steps", type=count(), help="optimizer steps (default: the preset's sft.steps, or sft.sweep_steps with --width)")
    parser.add_argument("--batch-size", type=count(), help="sequences per step over all processes (default: the preset's)")
    parser.add_argument("--micro-batch", type=count(), help="sequences per forward pass (default: the preset's)")
    parser.add_argument("--lr", type=float, help="peak Adam learning rate, embeddings and gains (default: the preset's)")
    parser.add_argument("--muon-lr", type=float, help="peak Muon learning rate, the blocks' matrices (default: the preset's)")
    parser.add_argument("--warmup", type=count(0), help="steps of linear learning-rate warm-up (default: the preset's)")
    parser.add_argument("--eval-every", type=count(), help="steps between evaluations and checkpoints (default: the preset's)")
    parser.add_argument("--width", type=count(), help="model width (n_embd), the size knob of the scaling sweep (default: the "
                        "preset's); another width than the preset's writes DIR/sft_wWIDTH instead of DIR/sft")
    parser.add_argument("--resume", action="store_true", help="continue from DIR/sft/ckpt.pt (DIR/sft_wWIDTH/ with --width)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model for training")
    args = parse(parser, argv, sft_section)
    args.name = f"sft_w{args.width}" if is_sweep(PRESETS[args.preset], args) else "sft"
    return args


def is_sweep(preset, args):
    return args.width not in (None, preset.n_embd)


def sft_section(preset, args):
    """The preset's SFT section; one of the sweep's smaller widths trains for its sweep_steps."""
    sft = preset.sft
    return replace(sft, steps=sft.sweep_steps or sft.steps) if is_sweep(preset, args) else sft


def train_step(train_model, model, optimizer, train, batch, d, micro_batch):
    """One optimizer step on a global batch (indices into train), split over the processes and
    into micro-batches. The loss is a sum over the global batch's solution tokens divided by their
    number, so any split gives the same gradient. Returns the step's loss and this process's tokens."""
    per_rank = len(batch) // d.world
    accum = per_rank // micro_batch
    n_targets = sum(len(train[i][0]) - train[i][1] for i in batch)
    mine = batch[d.rank * per_rank:(d.rank + 1) * per_rank]
    step_loss = torch.zeros((), device=d.device)
    for micro in range(accum):
        x, y = make_batch([train[i] for i in mine[micro * micro_batch:(micro + 1) * micro_batch]], d.device)
        syncing = d.world == 1 or micro == accum - 1
        with contextlib.nullcontext() if syncing else train_model.no_sync():
            with autocast(d.device):
                logits = train_model(x)  # (B, T, vocab)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-1, reduction="sum") / n_targets
            (loss * d.world).backward()  # DDP averages over processes; undo that to keep the sum
        step_loss += loss.detach()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if d.world > 1:
        torch.distributed.all_reduce(step_loss)
    return step_loss.item(), sum(len(train[i][0]) for i in mine)


def main(argv=None, stop_after=None):
    """stop_after: end the run after that many steps, as a kill right after a checkpoint would (tests)."""
    args = parse_args(argv)
    t0, preset, steps, name = time.time(), PRESETS[args.preset], args.steps, args.name

    # ---- inputs
    task = read_task(args.out)
    if task != preset.task:
        raise UserError(f"{args.out}/data was prepared for another preset: run data/prepare.py --preset {args.preset} --out {args.out}")
    d = setup_device(args.device)
    per_rank = args.batch_size // d.world
    args.micro_batch = min(args.micro_batch, per_rank)  # each process's share may be smaller than one micro-batch
    if per_rank == 0 or args.batch_size % d.world or per_rank % args.micro_batch:
        raise UserError(f"--batch-size {args.batch_size} must split into {d.world} processes x micro-batches of {args.micro_batch}")
    train = encode_examples(read_split(args.out, "train"))
    val, test = read_split(args.out, "val")[:preset.eval_problems], read_split(args.out, "test")

    # ---- model, optimizer, and the state of an earlier run
    torch.manual_seed(args.seed)
    model = GPT(preset.model_config(args.width), attn=args.attn).to(d.device)
    model.scalar_head.requires_grad_(False)  # SFT trains the language model only
    optimizer = make_optimizer(model, args.lr, args.muon_lr)
    ckpt_path = os.path.join(args.out, name, "ckpt.pt")
    start, history = 0, []
    if args.resume:
        ckpt = load_checkpoint(ckpt_path, expect_config=model.cfg)  # a missing one is an error: say so
        model.load_state_dict(ckpt["model"])
        load_optimizer(optimizer, ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        start, history = ckpt["step"], ckpt["loss_history"]
        if d.master:
            print(f"sft: resuming from step {start} of {steps}")
    train_model = torch.compile(model) if args.compile else model
    if d.world > 1:
        train_model = DDP(train_model, device_ids=[d.device.index] if d.device.type == "cuda" else None)

    # ---- train; validate and checkpoint every eval_every steps
    tokens_seen, train_time = 0, 0.0
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=name, disable=not d.master)
    for step in bar:
        t_step = time.time()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, group["peak_lr"], args.warmup)
        loss, tokens = train_step(train_model, model, optimizer, train, batch_indices(args.seed, step, len(train), args.batch_size),
                                  d, args.micro_batch)
        history.append(loss)
        tokens_seen += tokens
        train_time += time.time() - t_step
        bar.set_postfix(loss=f"{history[-1]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
        if (step + 1) % args.eval_every == 0 or step + 1 == steps:
            if d.master:
                quick = evaluate_policy(model, val, task, d.device)
                bar.write(f"sft step {step + 1}: loss {history[-1]:.4f}, val greedy accuracy {quick['accuracy']:.3f}")
                save_checkpoint(ckpt_path, model, step=step + 1, optimizer=optimizer.state_dict(), rng=torch.get_rng_state(),
                                loss_history=history, preset=args.preset)
        if stop_after is not None and step + 1 == stop_after:
            teardown(d)
            return None
    metrics = write_metrics(args, model, train, test, task, d, history, tokens_seen * d.world / train_time if train_time else None, t0) \
        if d.master else None
    teardown(d)
    return metrics


def write_metrics(args, model, train, test, task, d, history, tokens_per_second, t0):
    """Every difficulty bin of the test split, greedy, by the verifier; DIR/NAME/metrics.json."""
    result = evaluate_policy(model, test, task, d.device, desc="sft eval")
    in_range = [k for k in result["accuracy_by_difficulty"] if int(k) <= task.max_train_d]
    params, flop_params = sum(p.numel() for p in model.parameters()), model.flop_params()
    train_tokens = sum(len(train[i][0]) for s in range(args.steps) for i in batch_indices(args.seed, s, len(train), args.batch_size))
    metrics = {
        "stage": args.name, "preset": args.preset, "width": model.cfg.n_embd, "device": str(d.device), "processes": d.world,
        "steps": args.steps, "batch_size": args.batch_size, "params": params,
        "flop_params": flop_params,
        "final_loss": history[-1] if history else None, "loss_history": history,
        "train_tokens_per_second": tokens_per_second, "train_tokens": train_tokens,
        "train_flops": flops(flop_params, trained_tokens=train_tokens),
        "wall_time_s": time.time() - t0,
        "test_accuracy": sum(result["accuracy_by_difficulty"][k] for k in in_range) / len(in_range),
        **result,
    }
    write_json(os.path.join(args.out, args.name, "metrics.json"), metrics)
    print(accuracy_table(metrics, task.max_train_d))
    print(f"sft: {args.steps} steps in {metrics['wall_time_s']:.0f}s, in-range test accuracy {metrics['test_accuracy']:.3f}, "
          f"metrics in {args.out}/{args.name}/metrics.json")
    return metrics


if __name__ == "__main__":
    run_cli(main, resumable=True)

"""Speed: what the KV cache buys in generation, and what training costs per preset.

    python bench.py                      # generation at the small preset's model size
    python bench.py --preset small --save results/bench.json

1. Generation: greedy decoding of 512 new tokens, with the KV cache (model.generate: each new
   token costs one position of work) against the plain loop that re-runs the full forward over
   the whole sequence for every token. Both produce the same tokens; the ratio is what the
   cache is worth, measured in one run.
2. Training: tokens per second and peak memory of one SFT step (forward, backward, AdamW) at
   each preset's model size and micro-batch, on batches of real task problems.

Absolute times depend on the machine: quote them with the hardware; compare ratios.
"""
import json
import platform
import random
import resource
import time

import torch
import torch.nn.functional as F

from common import PRESETS, Parser, autocast, make_batch, setup_device
from data.task import PAD, generate_problem, prompt_text, solution_text
from data.tokenizer import encode, special_id
from model import GPT, generate


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


@torch.no_grad()
def uncached_greedy(model, prompt, n_new):
    """The loop without a cache: a full forward over the whole sequence for every new token."""
    seq = torch.tensor([prompt], device=model.wte.weight.device)
    for _ in range(n_new):
        next_token = model(seq)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, next_token], 1)
    return seq[0, len(prompt):].tolist()


def bench_generation(preset, device, n_new=512):
    cfg = preset.model_config()
    cfg.block_size = 64 + n_new  # room for 512 new tokens whatever the preset's context
    torch.manual_seed(0)
    model = GPT(cfg).to(device).eval()
    prompt = encode("a = 3; b = a * 2; c = b + a; ? c\n")
    with autocast(device):
        generate(model, [prompt], 8, special_id(PAD))  # warm-up
        cached, t_cached = timed(lambda: generate(model, [prompt], n_new, special_id(PAD))[0][0], device)
        uncached, t_uncached = timed(lambda: uncached_greedy(model, prompt, n_new), device)
    agree = sum(a == b for a, b in zip(cached, uncached)) / n_new
    return {"new_tokens": n_new, "kv_cache_tokens_per_s": n_new / t_cached,
            "no_cache_tokens_per_s": n_new / t_uncached, "speedup": t_uncached / t_cached, "same_tokens": agree}


def bench_training(preset, device, steps=5):
    rng, task = random.Random(0), preset.task
    examples = []
    for _ in range(preset.micro_batch):
        problem = generate_problem(rng, rng.randint(1, task.max_train_d), task)
        prompt = encode(prompt_text(problem.text()))
        examples.append((prompt + encode(solution_text(problem, task.p)), len(prompt)))
    x, y = make_batch(examples, device)
    torch.manual_seed(0)
    model = GPT(preset.model_config()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with autocast(device):
            logits = model(x)
        F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-1).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _, seconds = timed(lambda: [step() for _ in range(steps)], device)
    tokens = sum(len(ids) - 1 for ids, _ in examples) * steps
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # CPU: the process's peak RSS
    return {"params": sum(p.numel() for p in model.parameters()), "micro_batch": preset.micro_batch,
            "tokens_per_s": tokens / seconds, "peak_memory_mb": peak / 2**20}


def main():
    parser = Parser(description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, help="model size for the generation benchmark (default: small)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--save", metavar="FILE", help="also write the numbers to FILE as JSON")
    args = parser.parse_args()
    device = setup_device(args.device).device
    name = args.preset or "small"  # the size the later stages use
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"bench: {hardware}, torch {torch.__version__}")

    gen = bench_generation(PRESETS[name], device)
    print(f"\ngeneration, preset {name} model, batch 1, {gen['new_tokens']} new tokens (greedy)")
    print("| method | tokens/s |\n|---|---:|")
    print(f"| KV cache | {gen['kv_cache_tokens_per_s']:.0f} |\n| full forward per token | {gen['no_cache_tokens_per_s']:.0f} |")
    print(f"KV cache speed-up: {gen['speedup']:.1f}x (same tokens: {gen['same_tokens']:.0%})")

    train = {}
    print("\ntraining step (forward, backward, AdamW)\n| preset | params | micro-batch | tokens/s | peak memory (MB) |\n|---|---:|---:|---:|---:|")
    for preset_name in ("tiny", "small"):
        train[preset_name] = bench_training(PRESETS[preset_name], device)
        r = train[preset_name]
        print(f"| {preset_name} | {r['params'] / 1e6:.2f}M | {r['micro_batch']} | {r['tokens_per_s']:.0f} | {r['peak_memory_mb']:.0f} |")
    if device.type == "cpu":
        print("(CPU peak memory is the whole process's peak RSS, so it only grows down the table)")
    if args.save:
        with open(args.save, "w") as f:
            json.dump({"hardware": hardware, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
                       "generation": gen, "generation_preset": name, "training": train}, f, indent=2)


if __name__ == "__main__":
    main()

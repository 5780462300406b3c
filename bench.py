"""Speed: what the KV cache buys in generation, and what training costs per preset.

    python bench.py                      # every section (attention on a GPU only), at the small preset's size
    python bench.py --preset small --save results/bench.json

1. Generation: greedy decoding of 512 new tokens, with the KV cache (model.generate: each new
   token costs one position of work) against the plain loop that re-runs the full forward over
   the whole sequence for every token. Both produce the same tokens; the ratio is what the
   cache is worth, measured in one run (each loop 3 times, interleaved, the fastest kept).
2. Training: tokens per second and peak memory of one SFT step (forward, backward, SFT's Muon and
   Adam) at each preset's model size and micro-batch, on batches of real task problems.
3. Attention (GPU only; `python bench.py --attention` runs this part alone): causal bf16
   attention by kernels.cu (`cuda`), torch SDPA's flash backend (`sdpa`) and the explicit
   softmax (`math`), forward and forward+backward TFLOP/s for sequences 512..8192 and head dims
   64 and 128, peak memory at 8192, and small-preset training tokens/s with `cuda` and `sdpa`.
   FLOPs are counted as 4 B H N^2 D, halved for causal, x2.5 for forward+backward.
4. Search (`python bench.py --search` runs this part alone): generated tokens/s of search.py's
   step primitive (next_steps: one more step for every partial solution of a frontier, one
   batched KV-cached generate call) at frontier sizes 1, 16 and 256, and MCTS simulations/s
   (16 trees in lockstep, expansion width 4, the same model standing in as the PRM). The
   model is the preset's size with random weights, so each step runs to the 24-token cap.

Absolute times depend on the machine: quote them with the hardware; compare ratios.
"""
import os
import platform
import random
import resource
import time

import torch
import torch.nn.functional as F

from common import PRESETS, Parser, autocast, encode_examples, make_batch, make_optimizer, run_cli, setup_device, write_json
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


@torch.inference_mode()  # as model.generate, so the two loops differ only in the cache
def uncached_greedy(model, prompt, n_new):
    """The loop without a cache: a full forward over the whole sequence for every new token."""
    seq = torch.tensor([prompt], device=model.wte.weight.device)
    for _ in range(n_new):
        next_token = model(seq)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, next_token], 1)
    return seq[0, len(prompt):].tolist()


def bench_generation(preset, device, n_new=512, repeats=3):
    cfg = preset.model_config()
    cfg.block_size = 64 + n_new  # room for 512 new tokens whatever the preset's context
    torch.manual_seed(0)
    model = GPT(cfg).to(device).eval()
    prompt = encode("a = 3; b = a * 2; c = b + a; ? c\n")
    t_cached = t_uncached = float("inf")
    with autocast(device):
        generate(model, [prompt], 8, special_id(PAD))  # warm-up
        for _ in range(repeats):  # interleaved, the fastest of each kept: the least disturbed by other load
            cached, t = timed(lambda: generate(model, [prompt], n_new, special_id(PAD))[0][0], device)
            t_cached = min(t_cached, t)
            uncached, t = timed(lambda: uncached_greedy(model, prompt, n_new), device)
            t_uncached = min(t_uncached, t)
    agree = sum(a == b for a, b in zip(cached, uncached)) / n_new
    return {"new_tokens": n_new, "kv_cache_tokens_per_s": n_new / t_cached,
            "no_cache_tokens_per_s": n_new / t_uncached, "speedup": t_uncached / t_cached, "same_tokens": agree}


def bench_training(preset, device, steps=5, attn="sdpa"):
    rng, task = random.Random(0), preset.task
    problems = [generate_problem(rng, rng.randint(1, task.max_train_d), task) for _ in range(preset.sft.micro_batch)]
    examples = encode_examples([{"problem": pr.text(), "solution": solution_text(pr, task.p)} for pr in problems])
    x, y = make_batch(examples, device)
    torch.manual_seed(0)
    model = GPT(preset.model_config(), attn=attn).to(device)
    model.scalar_head.requires_grad_(False)  # as in SFT
    optimizer = make_optimizer(model, preset.sft.lr, preset.sft.muon_lr)

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
    return {"params": sum(p.numel() for p in model.parameters()), "micro_batch": preset.sft.micro_batch,
            "tokens_per_s": tokens / seconds, "peak_memory_mb": peak / 2**20}


def attention_backends():
    """name -> f(q, k, v) for causal attention; `cuda` only where kernels.cu can run."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import attention

    def sdpa_flash(q, k, v):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    backends = {"cuda": attention.FlashAttentionCUDA.apply, "sdpa": sdpa_flash, "math": lambda q, k, v: attention.attention(q, k, v, "math")}
    probe = torch.zeros(1, 1, 64, 64, device="cuda", dtype=torch.bfloat16)
    reason = attention.cuda_kernel_unavailable() or attention._flash_refuses(probe, probe, probe, None)
    if reason:
        print(f"attention: kernels.cu cannot run here ({reason}); timing sdpa and math only")
        del backends["cuda"]
    return backends


def time_cuda(fn, reps):
    """Seconds per call of fn, by CUDA events, after two warm-up calls."""
    for _ in range(2):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / reps


def bench_attention(lengths=(512, 1024, 2048, 4096, 8192), head_dims=(64, 128), tokens=16384, width=2048):
    """Causal bf16 attention, forward and forward+backward, per backend. Each shape has `tokens`
    tokens per batch (B = tokens / N) and width / D heads, the FlashAttention-2 paper's setting."""
    backends, rows = attention_backends(), []
    for D in head_dims:
        for N in lengths:
            B, H = max(1, tokens // N), width // D
            q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
            do = torch.randn_like(q)
            flops = 4 * B * H * N * N * D / 2  # causal: half of Q K^T and of P V
            for name, fn in backends.items():
                row = {"backend": name, "head_dim": D, "seq": N, "batch": B, "heads": H}
                try:
                    with torch.no_grad():
                        row["fwd_tflops"] = flops / time_cuda(lambda: fn(q, k, v), 10) / 1e12
                    row["fwd_bwd_tflops"] = 2.5 * flops / time_cuda(
                        lambda: torch.autograd.grad(fn(q, k, v), (q, k, v), do), 5) / 1e12
                    if N == max(lengths):  # memory of one forward+backward, beyond the inputs
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()
                        torch.autograd.grad(fn(q, k, v), (q, k, v), do)
                        row["peak_memory_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
                except torch.cuda.OutOfMemoryError:
                    row["error"] = "out of memory"
                torch.cuda.empty_cache()
                rows.append(row)
    return rows


def print_attention(rows):
    fmt = lambda x: "-" if x is None else f"{x:.1f}"
    print("\ncausal attention, bf16 (TFLOP/s: 4 B H N^2 D / 2 per forward, x2.5 with the backward)")
    print("| head dim | seq | batch x heads | backend | forward TFLOP/s | fwd+bwd TFLOP/s |\n|---:|---:|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['head_dim']} | {r['seq']} | {r['batch']}x{r['heads']} | {r['backend']} | "
              f"{fmt(r.get('fwd_tflops'))} | {fmt(r.get('fwd_bwd_tflops'))} |" + (f" {r['error']}" if "error" in r else ""))
    print("\npeak memory of one forward+backward at the longest sequence (MB, beyond q, k, v, dO)")
    for r in rows:
        if "peak_memory_mb" in r:
            print(f"  head dim {r['head_dim']}, {r['backend']}: {r['peak_memory_mb']:.0f}")
    by_key = {(r["backend"], r["head_dim"], r["seq"]): r for r in rows}
    print("\nratios of cuda (kernels.cu) to sdpa's flash backend and to math, forward | forward+backward")
    for (backend, D, N), r in by_key.items():
        if backend != "cuda" or "fwd_tflops" not in r:
            continue
        parts = []
        for other in ("sdpa", "math"):
            o = by_key.get((other, D, N), {})
            if o.get("fwd_tflops"):
                parts.append(f"vs {other} {r['fwd_tflops'] / o['fwd_tflops']:.2f}x | {r['fwd_bwd_tflops'] / o['fwd_bwd_tflops']:.2f}x")
        print(f"  D {D}, N {N}: " + ", ".join(parts))


@torch.no_grad()
def bench_search(preset, device, frontiers=(1, 16, 256), step_tokens=24, trees=16, simulations=16):
    """Section 4. It times search.py's own functions, so it imports search.py: the one place a
    script imports another (they would move to common.py together)."""
    import search
    torch.manual_seed(0)
    model = GPT(preset.model_config()).to(device).eval()
    rng = random.Random(0)
    prompts = [encode(prompt_text(generate_problem(rng, rng.randint(1, preset.task.max_train_d), preset.task).text()))
               for _ in range(max(frontiers))]
    extend = lambda nodes: search.next_steps(model, nodes, max_step_tokens=step_tokens)
    out = {"step_tokens": step_tokens, "tokens_per_s": {}}
    with autocast(device):
        extend([search.new_root(p) for p in prompts[:4]])  # warm-up
        for n in frontiers:
            best = 0.0
            for _ in range(2):  # the better of two runs: the CPU may be shared
                roots = [search.new_root(p) for p in prompts[:n]]
                _, seconds = timed(lambda: extend(roots), device)
                best = max(best, sum(r.compute.generated_tokens for r in roots) / seconds)
            out["tokens_per_s"][n] = best
        roots = [search.new_root(p) for p in prompts[:trees]]
        _, seconds = timed(lambda: search.mcts(roots, extend, lambda chains: search.score_steps(model, chains),
                                               simulations, width=4), device)
    out["mcts"] = {"trees": trees, "simulations": sum(r.visit_count for r in roots), "seconds": seconds,
                   "simulations_per_s": sum(r.visit_count for r in roots) / seconds,
                   "generated_tokens": sum(r.compute.generated_tokens for r in roots)}
    return out


def print_search(r, name):
    t = r["tokens_per_s"]
    print(f"\nsearch: step primitive (next_steps), preset {name} model, steps of up to {r['step_tokens']} tokens")
    print("| frontier | generated tokens/s |\n|---:|---:|")
    for n, v in t.items():
        print(f"| {n} | {v:.0f} |")
    print(f"batching: frontier {max(t)} generates {t[max(t)] / t[min(t)]:.1f}x the tokens/s of frontier {min(t)}")
    m = r["mcts"]
    print(f"MCTS: {m['simulations']} simulations over {m['trees']} trees in {m['seconds']:.1f} s: "
          f"{m['simulations_per_s']:.1f} simulations/s ({m['generated_tokens']} tokens generated)")


def main():
    parser = Parser(description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, help="model size for the generation and search benchmarks (default: small)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--save", metavar="FILE", help="also write the numbers to FILE as JSON")
    parser.add_argument("--attention", action="store_true", help="only the attention benchmark (section 3; needs a GPU)")
    parser.add_argument("--search", action="store_true", help="only the search benchmark (section 4)")
    args = parser.parse_args()
    device = setup_device(args.device).device
    name = args.preset or "small"  # the size the later stages use
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    print(f"bench: {hardware}, torch {torch.__version__}")
    if args.attention:
        if device.type != "cuda":
            raise SystemExit("bench.py --attention: needs a CUDA GPU (kernels.cu, SDPA's flash backend)")
        return save(args.save, hardware, attention=run_attention(device))
    if args.search:
        search_speed = bench_search(PRESETS[name], device)
        print_search(search_speed, name)
        return save(args.save, hardware, search=search_speed, search_preset=name)

    gen = bench_generation(PRESETS[name], device)
    print(f"\ngeneration, preset {name} model, batch 1, {gen['new_tokens']} new tokens (greedy)")
    print("| method | tokens/s |\n|---|---:|")
    print(f"| KV cache | {gen['kv_cache_tokens_per_s']:.0f} |\n| full forward per token | {gen['no_cache_tokens_per_s']:.0f} |")
    print(f"KV cache speed-up: {gen['speedup']:.1f}x (same tokens: {gen['same_tokens']:.0%})")

    train = {}
    print("\ntraining step (forward, backward, SFT's Muon and Adam)\n| preset | params | micro-batch | tokens/s | peak memory (MB) |\n|---|---:|---:|---:|---:|")
    for preset_name in ("tiny", "small"):
        train[preset_name] = bench_training(PRESETS[preset_name], device)
        r = train[preset_name]
        print(f"| {preset_name} | {r['params'] / 1e6:.2f}M | {r['micro_batch']} | {r['tokens_per_s']:.0f} | {r['peak_memory_mb']:.0f} |")
    if device.type == "cpu":
        print("(CPU peak memory is the whole process's peak RSS, so it only grows down the table)")
    if device.type == "cuda":
        attn = run_attention(device, sdpa_training=train["small"])
    else:
        attn = None
        print("\nattention kernels: skipped (no CUDA GPU: kernels.cu and SDPA's flash backend need one)")
    search_speed = bench_search(PRESETS[name], device)
    print_search(search_speed, name)
    save(args.save, hardware, generation=gen, generation_preset=name, training=train, attention=attn, search=search_speed)


def save(path, hardware, **numbers):
    """--save FILE: the numbers with the hardware, torch and the date, written atomically (nothing without --save)."""
    if path:
        write_json(os.path.abspath(path), {"hardware": hardware, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), **numbers})


def run_attention(device, sdpa_training=None):
    """Section 3: the kernel table, then small-preset training with cuda against sdpa."""
    rows = bench_attention()
    print_attention(rows)
    if not any(r["backend"] == "cuda" for r in rows):
        return {"kernels": rows}
    small = PRESETS["small"]
    sdpa_training = sdpa_training or bench_training(small, device)
    cuda_training = bench_training(small, device, attn="cuda")
    ratio = cuda_training["tokens_per_s"] / sdpa_training["tokens_per_s"]
    print(f"\nsmall-preset training step: cuda {cuda_training['tokens_per_s']:.0f} tokens/s, "
          f"sdpa {sdpa_training['tokens_per_s']:.0f} tokens/s ({ratio:.2f}x)")
    return {"kernels": rows, "small_training": {"cuda": cuda_training, "sdpa": sdpa_training, "ratio": ratio}}


if __name__ == "__main__":
    run_cli(main)

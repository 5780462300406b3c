"""The attention backends behind one switch (model.py's `--attn`): `math` (the explicit softmax),
`sdpa` (torch's fused kernels) and `cuda`, the flash attention of kernels.cu, with TiledAttention,
its algorithm in PyTorch loop for loop. `cuda` is built on first use with
torch.utils.cpp_extension, checked once against sdpa, and falls back to sdpa with one warning
wherever it cannot run.
"""
import math
import os
import re
import shutil
import subprocess
import sys
import warnings

import torch
import torch.nn.functional as F

ATTENTION_BACKENDS = ("math", "sdpa", "cuda")
_warned = set()


def _warn_once(key, message):
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


def resolve_attention(name):
    """The backend that will really run. `cuda` (kernels.cu) needs a CUDA build of torch and a GPU
    with bf16 tensor cores (sm_80 or newer); without them it falls back to `sdpa`, with one warning."""
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}: choose from {', '.join(ATTENTION_BACKENDS)}")
    if name == "cuda":
        reason = cuda_kernel_unavailable()
        if reason:
            _warn_once("cuda", f"--attn cuda: {reason}; using sdpa")
            return "sdpa"
    return name


def attention(q, k, v, backend, mask=None):
    """softmax(Q K^T / sqrt(d)) V, causal. q: (B, H, Tq, D), k and v: (B, H, Tk, D), the queries
    being the last Tq of the Tk positions (Tq = 1: the new token of a KV-cached step, which sees
    every key). mask: None for plain causal attention, else a bool (B, 1, Tq, Tk), True = may attend."""
    Tq, Tk = q.size(-2), k.size(-2)
    if backend == "cuda":
        reason = _flash_refuses(q, k, v, mask)
        if reason is None:
            return FlashAttentionCUDA.apply(q, k, v)
        _warn_once(f"cuda: {reason}", f"--attn cuda: {reason}; using sdpa there")
        backend = "sdpa"
    if mask is None and 1 < Tq < Tk:  # sdpa's is_causal aligns the first query with the first key
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(Tk - Tq)
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and Tq > 1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
    if mask is None:
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(Tk - Tq)
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


# ----------------------------------------------------------------------------- flash attention
#
# FlashAttention-2 (Dao 2023) computes the same softmax(Q K^T / sqrt(d)) V without ever holding
# the (T, T) score matrix: queries in blocks Q_i, keys and values streamed in blocks K_j, V_j, an
# online softmax in between. TiledAttention is the algorithm in PyTorch, loop for loop what
# kernels.cu does per thread block (tested against `math` on CPU); FlashAttentionCUDA runs kernels.cu.

def _flash_forward(q, k, v, block_q=64, block_k=64):
    """O and the log-sum-exp L (B, H, T) of causal attention, one (block_q, block_k) tile at a time."""
    B, H, T, D = q.shape
    work = torch.float64 if q.dtype == torch.float64 else torch.float32  # kernels.cu: bf16 in, fp32 sums
    scale = 1.0 / math.sqrt(D)  # tau
    o = torch.empty_like(q)
    lse = q.new_empty(B, H, T, dtype=work)
    for i0 in range(0, T, block_q):  # a thread block in kernels.cu
        i1 = min(i0 + block_q, T)
        q_i = q[:, :, i0:i1].to(work)  # (B, H, Br, D)
        rows = torch.arange(i0, i1, device=q.device)
        m = q_i.new_full((B, H, i1 - i0), float("-inf"))  # running row max
        l = q_i.new_zeros(B, H, i1 - i0)  # running row sum of exp(S - m)
        acc = q_i.new_zeros(B, H, i1 - i0, D)  # O~, unnormalised
        for j0 in range(0, i1, block_k):  # causal: tiles wholly above the diagonal (j0 >= i1) are skipped
            k_j, v_j = k[:, :, j0:j0 + block_k].to(work), v[:, :, j0:j0 + block_k].to(work)
            s = scale * q_i @ k_j.transpose(-2, -1)  # S_ij (B, H, Br, Bc)
            if j0 + k_j.size(2) - 1 > i0:  # the tile crosses the diagonal: only here is there a mask
                keys = torch.arange(j0, j0 + k_j.size(2), device=q.device)
                s = s.masked_fill(keys[None, :] > rows[:, None], float("-inf"))
            # online softmax (FlashAttention-2, section 3.1.1): m_new = max(m, rowmax(S_ij)),
            # P~ = exp(S_ij - m_new), l = exp(m - m_new) l + rowsum(P~), O~ = exp(m - m_new) O~ + P~ V_j
            m_new = torch.maximum(m, s.amax(-1))
            p = torch.exp(s - m_new[..., None])
            alpha = torch.exp(m - m_new)
            l = alpha * l + p.sum(-1)
            acc = alpha[..., None] * acc + p @ v_j
            m = m_new
        o[:, :, i0:i1] = (acc / l[..., None]).to(q.dtype)  # O_i = O~ / l
        lse[:, :, i0:i1] = m + torch.log(l)  # L_i = m + log(l), all the backward needs of the softmax
    return o, lse


def _flash_backward(do, q, k, v, o, lse, block_q=64, block_k=64):
    """dQ, dK, dV of causal attention from the saved O and L: P is recomputed tile by tile."""
    B, H, T, D = q.shape
    work, scale = lse.dtype, 1.0 / math.sqrt(D)
    delta = (do.to(work) * o.to(work)).sum(-1)  # D_i = rowsum(dO_i o O_i)  (B, H, T)
    dq, dk, dv = (torch.zeros(B, H, T, D, dtype=work, device=q.device) for _ in range(3))

    def tile(i0, i1, j0, j1):
        """P_ij and dS_ij of one tile, recomputed from the log-sum-exp."""
        q_i, do_i, k_j, v_j = q[:, :, i0:i1].to(work), do[:, :, i0:i1].to(work), k[:, :, j0:j1].to(work), v[:, :, j0:j1].to(work)
        p = torch.exp(scale * q_i @ k_j.transpose(-2, -1) - lse[:, :, i0:i1, None])  # P_ij = exp(S_ij - L_i)
        if j1 - 1 > i0:  # crosses the diagonal
            keys, rows = torch.arange(j0, j1, device=q.device), torch.arange(i0, i1, device=q.device)
            p = p.masked_fill(keys[None, :] > rows[:, None], 0.0)
        dp = do_i @ v_j.transpose(-2, -1)  # dP_ij = dO_i V_j^T
        ds = p * (dp - delta[:, :, i0:i1, None])  # dS_ij = P_ij o (dP_ij - D_i)
        return q_i, do_i, k_j, p, ds

    # pass 1, a thread block per key block j: dV_j = sum_i P_ij^T dO_i, dK_j = tau sum_i dS_ij^T Q_i
    for j0 in range(0, T, block_k):
        j1 = min(j0 + block_k, T)
        for i0 in range(j0 // block_q * block_q, T, block_q):  # causal: query blocks at or below the diagonal
            q_i, do_i, _, p, ds = tile(i0, min(i0 + block_q, T), j0, j1)
            dv[:, :, j0:j1] += p.transpose(-2, -1) @ do_i
            dk[:, :, j0:j1] += scale * ds.transpose(-2, -1) @ q_i
    # pass 2, a thread block per query block i: dQ_i = tau sum_j dS_ij K_j. A separate pass, so that
    # every output row has one writer: deterministic, where adding dQ in pass 1 would need atomics.
    for i0 in range(0, T, block_q):
        i1 = min(i0 + block_q, T)
        for j0 in range(0, i1, block_k):
            _, _, k_j, _, ds = tile(i0, i1, j0, min(j0 + block_k, T))
            dq[:, :, i0:i1] += scale * ds @ k_j
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class TiledAttention(torch.autograd.Function):
    """Causal attention by the FlashAttention-2 algorithm in PyTorch, with its own backward.
    Slow (Python loops over tiles); it is here to be read and tested, kernels.cu to be run."""

    @staticmethod
    def forward(ctx, q, k, v, block_q=64, block_k=64):
        o, lse = _flash_forward(q, k, v, block_q, block_k)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.blocks = (block_q, block_k)
        return o

    @staticmethod
    def backward(ctx, do):
        return (*_flash_backward(do, *ctx.saved_tensors, *ctx.blocks), None, None)


_HERE = os.path.dirname(os.path.abspath(__file__))
_KERNEL_SOURCES = [os.path.join(_HERE, "kernels.cu"), os.path.join(_HERE, "kernels_binding.cpp")]
_extension = None  # kernels.cu built and checked, or a string: why it is not used


def cuda_kernel_unavailable():
    """Why kernels.cu cannot run on this machine at all, or None if it can."""
    if torch.version.cuda is None:
        return "this torch is built without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    if torch.cuda.get_device_capability() < (8, 0):
        return f"{torch.cuda.get_device_name()} has no bf16 tensor cores (kernels.cu needs sm_80 or newer)"
    return None


def _flash_extension(device="cuda"):
    """kernels.cu, built on first use and trusted only once it passes its self-check on `device`;
    or a string: why not, which every later call gets too, so attention() uses sdpa from then on."""
    global _extension
    if _extension is None:
        _extension = _build_kernels()
        if not isinstance(_extension, str):
            _extension = _self_check(FlashAttentionCUDA.apply, device) or _extension
        if isinstance(_extension, str):  # the same key as attention()'s warning: said once
            _warn_once(f"cuda: {_extension}", f"--attn cuda: {_extension}; using sdpa")
    return _extension


def _build_kernels():
    """kernels.cu and its binding compiled by torch.utils.cpp_extension, which caches the build (in
    $TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions) and rebuilds only when a source
    changes; or one line: why it cannot be built."""
    problem = _build_problem()
    if problem:
        return f"kernels.cu cannot be built: {problem}"
    print("model: loading kernels.cu (built by torch.utils.cpp_extension on first use, about 15 s; cached after)",
          file=sys.stderr)
    try:
        from torch.utils.cpp_extension import load
        return load(name="o1_flash_attention", sources=_KERNEL_SOURCES, extra_cuda_cflags=["-O3"])
    except Exception as e:  # a compiler or linker error: the line that says which, not the whole log
        return f"kernels.cu did not build: {_first_error(str(e))[:300]}"


def _build_problem():
    """What stops torch.utils.cpp_extension from building kernels.cu here, and the fix, in one line;
    None if nothing does. Checked before the build, so that a user reads the cause, not a log."""
    from torch.utils import cpp_extension
    if not cpp_extension.is_ninja_available():
        return "ninja is missing (cpp_extension builds with it): pip install ninja"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler {compiler!r}: install g++ (apt install g++) or set CXX to one"
    nvcc = os.path.join(cpp_extension.CUDA_HOME or "", "bin", "nvcc")
    if not cpp_extension.CUDA_HOME or not os.path.exists(nvcc):
        return f"no nvcc: install the CUDA {torch.version.cuda} toolkit and set CUDA_HOME to it (or put its bin/ on the PATH)"
    release = re.search(r"release (\d+)\.(\d+)", subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout)
    ours = torch.version.cuda.split(".")[0]
    if release and release.group(1) != ours:
        return (f"{nvcc} is CUDA {release.group(1)}.{release.group(2)}, this torch is built with CUDA {torch.version.cuda}: "
                f"set CUDA_HOME to a CUDA {ours}.x toolkit, or install a torch built for CUDA {release.group(1)}")
    return None


def _first_error(log):
    """The line of a failed build's log that says what went wrong: the first line the failed command
    printed (ninja writes `FAILED: target`, then the command, then its output), else the last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()] or ["no message"]
    failed = next((i for i, line in enumerate(lines) if line.startswith("FAILED:")), None)
    return lines[failed + 2] if failed is not None and failed + 2 < len(lines) else lines[-1]


def _self_check(flash, device):
    """Why kernels.cu must not be trusted, or None. On a random causal batch of each head dim, its
    output and dQ, dK, dV in bf16 must be within twice SDPA's own bf16 error of an fp32 reference
    (the rule of FlashAttention's tests); else the warning names each one that is not, with both errors."""
    device, generator = torch.device(device), torch.Generator().manual_seed(0)  # the training's random stream is left alone
    try:
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            for D in (64, 128):
                q, k, v, do = (torch.randn(2, 3, 200, D, generator=generator).to(device) for _ in range(4))
                errors = flash_errors(flash, q, k, v, do)
                wrong = [f"{name} {ours:.1e} (sdpa {sdpa:.1e})" for name, (ours, sdpa) in errors.items()
                         if ours > 2 * sdpa + 1e-4]  # + 1e-4: where sdpa is exact, a last-bit difference is no error
                if wrong:
                    return (f"kernels.cu failed its self-check against sdpa (causal, B=2, H=3, T=200, D={D}; max error "
                            f"against fp32, more than twice sdpa's): {', '.join(wrong)}")
    except RuntimeError as e:  # a launch or shape error of the kernel itself
        return f"kernels.cu failed its self-check: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
    return None


def _outputs_and_gradients(fn, q, k, v, do):
    """fn(q, k, v) and the gradients dq, dk, dv for the upstream gradient do."""
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = fn(q, k, v)
    out.backward(do)
    return [out.detach(), q.grad, k.grad, v.grad]


def flash_errors(flash, q, k, v, do):
    """{"out" | "dq" | "dk" | "dv": (flash's error, sdpa's error)}: the largest |error| of causal attention
    by `flash` and by sdpa, both on q, k, v and the upstream gradient do in bf16, against the math
    backend in fp32 on the same (bf16-rounded) numbers."""
    q, k, v, do = (x.to(torch.bfloat16) for x in (q, k, v, do))
    reference = _outputs_and_gradients(lambda *x: attention(*x, "math"), q.float(), k.float(), v.float(), do.float())

    def errors(fn):
        return [(a.float() - b).abs().max().item() for a, b in zip(_outputs_and_gradients(fn, q, k, v, do), reference)]
    return dict(zip(("out", "dq", "dk", "dv"), zip(errors(flash), errors(lambda *x: attention(*x, "sdpa")))))


def _flash_refuses(q, k, v, mask):
    """Why kernels.cu cannot take this call, or None if it can."""
    if mask is not None:
        return "an explicit attention mask (padded batches, KV-cache generation) is not in kernels.cu"
    if not q.is_cuda:
        return f"the tensors are on {q.device.type}, not a GPU"
    if q.dtype != torch.bfloat16:
        return f"kernels.cu takes bfloat16, not {q.dtype} (train under autocast on a GPU)"
    if q.size(-1) not in (64, 128):
        return f"kernels.cu has head dims 64 and 128, not {q.size(-1)}"
    if q.shape != k.shape:
        return "kernels.cu needs as many keys as queries (no KV cache)"
    extension = _flash_extension(q.device)
    return extension if isinstance(extension, str) else None


def _stream(x):
    return torch.cuda.current_stream(x.device).cuda_stream


def _aligned(x):
    """Contiguous and 16-byte aligned, as kernels.cu's 16-byte loads need."""
    x = x.contiguous()
    return x if x.data_ptr() % 16 == 0 else x.clone()


class FlashAttentionCUDA(torch.autograd.Function):
    """Causal attention by kernels.cu: (B, H, T, D) bf16 on a GPU, D 64 or 128."""

    @staticmethod
    def forward(ctx, q, k, v):
        q, k, v = _aligned(q), _aligned(k), _aligned(v)
        with torch.cuda.device(q.device):
            o, lse = _flash_extension().forward(q, k, v, _stream(q))
        ctx.save_for_backward(q, k, v, o, lse)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        with torch.cuda.device(q.device):
            return tuple(_flash_extension().backward(_aligned(do.to(q.dtype)), q, k, v, o, lse, _stream(q)))

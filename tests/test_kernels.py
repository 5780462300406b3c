"""Flash attention: the PyTorch mirror of the tiled algorithm (model.TiledAttention), kernels.cu
compiled by nvcc, and (on a GPU) kernels.cu itself inside the model."""
import os
import re
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

import model as model_lib
from model import TiledAttention, attention, cuda_kernel_unavailable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# odd lengths against tile sizes: one row, partial tiles, one short of a tile and one past it, square and
# non-square tiles (B_r != B_c), and kernels.cu's own 64 x 64
CASES = [(1, (16, 16)), (17, (16, 32)), (63, (32, 16)), (65, (16, 16)), (65, (64, 64)), (100, (32, 16)), (130, (64, 64))]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The mirror runs hundreds of tiny matmuls: one thread is much faster than a busy two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_qkv(T, B=2, H=3, D=8, dtype=torch.float32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g, dtype=torch.float32).to(device=device, dtype=dtype) for _ in range(3)]


def with_grads(fn, q, k, v, do):
    """Output and dq, dk, dv of fn(q, k, v) for the upstream gradient do."""
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = fn(q, k, v)
    out.backward(do)
    return out.detach(), q.grad, k.grad, v.grad


# ----------------------------------------------------------------------------- the PyTorch mirror (CPU)

@pytest.mark.parametrize("T, blocks", CASES)
def test_tiled_attention_matches_math_forward_and_gradients(T, blocks):
    q, k, v = random_qkv(T)
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(1))  # a random upstream gradient, not ones
    ours = with_grads(lambda q, k, v: TiledAttention.apply(q, k, v, *blocks), q, k, v, do)
    reference = with_grads(lambda q, k, v: attention(q, k, v, "math"), q, k, v, do)
    for name, a, b in zip(("out", "dq", "dk", "dv"), ours, reference):
        assert torch.allclose(a, b, atol=2e-5, rtol=1e-4), f"{name}: max error {(a - b).abs().max():.2e}"


def test_tiled_attention_saves_the_log_sum_exp_of_each_row():
    q, k, v = random_qkv(37)
    _, lse = model_lib._flash_forward(q, k, v, 16, 16)
    scores = (q @ k.transpose(-2, -1)) / q.size(-1) ** 0.5
    scores = scores.masked_fill(~torch.ones(37, 37, dtype=torch.bool).tril(), float("-inf"))
    assert torch.allclose(lse, torch.logsumexp(scores, -1), atol=1e-5)


def test_tiled_attention_is_causal_in_outputs_and_gradients():
    T, t = 40, 21  # change everything from position t on; earlier positions must not notice
    q, k, v = random_qkv(T)
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, :, t:] = torch.randn_like(x[:, :, t:])
    do = torch.randn(q.shape)
    do[:, :, t:] = 0  # the loss reads positions before t only
    a = with_grads(lambda q, k, v: TiledAttention.apply(q, k, v, 16, 16), q, k, v, do)
    b = with_grads(lambda q, k, v: TiledAttention.apply(q, k, v, 16, 16), q2, k2, v2, do)
    for x, y in zip(a, b):
        assert torch.allclose(x[:, :, :t], y[:, :, :t], atol=1e-6)


def softmax_attention_float64(q, k, v):
    """Causal softmax(Q K^T / sqrt(d)) V all in float64 (the math backend takes its softmax in float32)."""
    scores = (q @ k.transpose(-2, -1)) / q.size(-1) ** 0.5
    causal = torch.ones(q.size(2), q.size(2), dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~causal, float("-inf")), -1) @ v


def test_tiled_attention_stays_finite_for_large_logits():
    q, k, v = random_qkv(40, dtype=torch.float64)
    do = torch.randn(q.shape, dtype=torch.float64)
    ours = with_grads(lambda q, k, v: TiledAttention.apply(q, k, v, 16, 16), 20 * q, k, v, do)
    reference = with_grads(softmax_attention_float64, 20 * q, k, v, do)
    for a, b in zip(ours, reference):
        assert torch.isfinite(a).all()
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-7)


# ----------------------------------------------------------------------------- the switch and its fallback

def forget_cuda_warnings():
    for key in [key for key in model_lib._warned if key.startswith("cuda")]:
        model_lib._warned.discard(key)


def test_cuda_backend_on_cpu_tensors_falls_back_to_sdpa_with_one_warning():
    forget_cuda_warnings()
    q, k, v = random_qkv(9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = attention(q, k, v, "cuda")
        second = attention(q, k, v, "cuda")
    assert len(caught) == 1 and "sdpa" in str(caught[0].message) and "cpu" in str(caught[0].message)
    assert torch.equal(first, attention(q, k, v, "sdpa")) and torch.equal(first, second)


def test_cuda_backend_hands_masked_calls_to_sdpa():
    forget_cuda_warnings()
    q, k, v = random_qkv(9)
    mask = (torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(0)) > 0.3) | torch.eye(9, dtype=torch.bool)
    with pytest.warns(UserWarning, match="mask"):
        out = attention(q, k, v, "cuda", mask)
    assert torch.equal(out, attention(q, k, v, "sdpa", mask))


@pytest.mark.skipif(cuda_kernel_unavailable() is None, reason="this machine can run kernels.cu")
def test_model_with_cuda_attention_resolves_to_sdpa_where_the_kernel_cannot_run():
    forget_cuda_warnings()
    with pytest.warns(UserWarning, match=re.escape(cuda_kernel_unavailable())):
        assert model_lib.resolve_attention("cuda") == "sdpa"


# ----------------------------------------------------------------------------- kernels.cu compiles (nvcc)

@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc")
def test_kernels_compile_for_sm90_without_register_spills(tmp_path):
    from torch.utils.cpp_extension import COMMON_NVCC_FLAGS  # the defines cpp_extension passes nvcc
    cmd = ["nvcc", "-arch=sm_90", "-std=c++17", "-O3", "-c", os.path.join(ROOT, "kernels.cu"),
           "-o", str(tmp_path / "kernels.o"), "-Xptxas", "-v", *COMMON_NVCC_FLAGS]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.stdout + result.stderr
    kernels = re.findall(r"Compiling entry function '(\w+)' for 'sm_90'", report)
    for name in ("forward_kernelILi64", "forward_kernelILi128", "dkdv_kernelILi64", "dkdv_kernelILi128",
                 "dq_kernelILi64", "dq_kernelILi128", "delta_kernel"):
        assert any(name in k for k in kernels), f"{name} was not compiled"
    spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
    assert len(spills) == len(kernels)
    assert all(stores == "0" and loads == "0" for stores, loads in spills), report


# ----------------------------------------------------------------------------- kernels.cu on a GPU

@pytest.fixture(scope="module")
def flash():
    """The built extension (building it if needed); a GPU that should run it but cannot build it fails."""
    reason = cuda_kernel_unavailable()
    if reason:
        pytest.skip(reason)
    extension = model_lib._flash_extension()
    assert not isinstance(extension, str), extension
    return model_lib.FlashAttentionCUDA.apply


def sdpa_flash(q, k, v):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def max_errors(got, reference):
    return [(a.float() - b).abs().max().item() for a, b in zip(got, reference)]


@pytest.mark.gpu
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("T", [1, 17, 63, 64, 65, 1000, 1023, 4096])
def test_cuda_kernel_is_as_accurate_as_sdpa_in_bf16(flash, T, D):
    q, k, v = random_qkv(T, B=2, H=3, D=D, dtype=torch.bfloat16, device="cuda")
    do = torch.randn(q.shape, device="cuda", dtype=torch.bfloat16)
    reference = with_grads(lambda q, k, v: attention(q, k, v, "math"), q.float(), k.float(), v.float(), do.float())
    ours = max_errors(with_grads(flash, q, k, v, do), reference)
    theirs = max_errors(with_grads(sdpa_flash, q, k, v, do), reference)
    for name, mine, sdpa in zip(("out", "dq", "dk", "dv"), ours, theirs):
        assert mine <= 2 * sdpa + 1e-4, f"{name}: error {mine:.2e}, SDPA's {sdpa:.2e}"


@pytest.mark.gpu
@pytest.mark.parametrize("D", [64, 128])
def test_cuda_kernel_is_causal_in_outputs_and_gradients(flash, D):
    T, t = 300, 150  # t inside a tile: the diagonal tile's mask is what is tested
    q, k, v = random_qkv(T, D=D, dtype=torch.bfloat16, device="cuda")
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, :, t:] = torch.randn_like(x[:, :, t:])
    do = torch.randn(q.shape, device="cuda", dtype=torch.bfloat16)
    do[:, :, t:] = 0
    for a, b in zip(with_grads(flash, q, k, v, do), with_grads(flash, q2, k2, v2, do)):
        assert torch.equal(a[:, :, :t], b[:, :, :t])


@pytest.mark.gpu
@pytest.mark.parametrize("D", [64, 128])
def test_cuda_kernel_stays_finite_for_logits_times_20(flash, D):
    q, k, v = random_qkv(777, D=D, dtype=torch.bfloat16, device="cuda")
    do = torch.randn(q.shape, device="cuda", dtype=torch.bfloat16)
    for x in with_grads(flash, q * 20, k, v, do):
        assert torch.isfinite(x).all()


@pytest.mark.gpu
@pytest.mark.parametrize("D", [64, 128])
def test_cuda_kernel_backward_is_deterministic(flash, D):
    q, k, v = random_qkv(1000, D=D, dtype=torch.bfloat16, device="cuda")
    do = torch.randn(q.shape, device="cuda", dtype=torch.bfloat16)
    first, second = with_grads(flash, q, k, v, do), with_grads(flash, q, k, v, do)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.gpu
def test_model_uses_the_kernel_under_autocast(flash):
    forget_cuda_warnings()
    cfg = model_lib.GPTConfig(vocab_size=300, block_size=128, n_layer=2, n_head=2, n_embd=128)  # head dim 64
    torch.manual_seed(0)
    net = model_lib.GPT(cfg, attn="cuda").cuda()
    assert net.attn == "cuda"
    x = torch.randint(0, 300, (2, 100), device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback on this path
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = net(x)
        logits.float().square().mean().backward()
    net.attn = "sdpa"
    with torch.autocast("cuda", dtype=torch.bfloat16):
        expected = net(x)
    assert (logits.float() - expected.float()).abs().max() < 0.05


@pytest.mark.gpu
@pytest.mark.slow
def test_200_steps_of_the_small_preset_train_the_same_with_cuda_and_sdpa(flash, tmp_path):
    import train_sft
    subprocess.run([sys.executable, "data/prepare.py", "--preset", "small", "--out", str(tmp_path / "data_run")],
                   cwd=ROOT, check=True)
    curves = {}
    for attn in ("sdpa", "cuda"):
        os.makedirs(tmp_path / attn)
        os.symlink(tmp_path / "data_run" / "data", tmp_path / attn / "data")
        metrics = train_sft.main(["--preset", "small", "--out", str(tmp_path / attn), "--attn", attn,
                                  "--steps", "200", "--eval-every", "200"])
        curves[attn] = metrics["loss_history"]
    sdpa, cuda = curves["sdpa"], curves["cuda"]
    assert len(sdpa) == len(cuda) == 200
    assert abs(sdpa[0] - cuda[0]) < 0.01  # same weights, same batch: only bf16 rounding differs
    tail_sdpa, tail_cuda = sum(sdpa[-50:]) / 50, sum(cuda[-50:]) / 50
    assert abs(tail_sdpa - tail_cuda) < 0.03 * tail_sdpa, (tail_sdpa, tail_cuda)

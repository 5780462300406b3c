"""Flash attention: the PyTorch mirror of the tiled algorithm (attention.TiledAttention), the `cuda`
switch and its fallbacks (the self-check on first use, a build that cannot happen), kernels.cu
compiled by nvcc and its binding by c++, and (on a GPU) kernels.cu itself inside the model."""
import os
import re
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

import attention as attention_lib
from attention import TiledAttention, attention, cuda_kernel_unavailable
from model import GPT, GPTConfig

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


# with_grads(fn, q, k, v, do): fn(q, k, v) and dq, dk, dv for the upstream gradient do
with_grads = attention_lib._outputs_and_gradients


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
    _, lse = attention_lib._flash_forward(q, k, v, 16, 16)
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
    for key in [key for key in attention_lib._warned if key.startswith("cuda")]:
        attention_lib._warned.discard(key)


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


def test_cuda_backend_resolves_to_sdpa_with_a_warning_only_where_the_kernel_cannot_run():
    forget_cuda_warnings()
    reason = cuda_kernel_unavailable()
    if reason is None:  # a GPU that can run kernels.cu: no fallback, and nothing to warn about
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert attention_lib.resolve_attention("cuda") == "cuda"
    else:
        with pytest.warns(UserWarning, match=re.escape(reason)):
            assert attention_lib.resolve_attention("cuda") == "sdpa"


# ----------------------------------------------------------------------------- the self-check on first use

def one_key_too_many(q, k, v):
    """A plausible kernel bug: the causal mask lets each query see the key after it."""
    T = q.size(2)
    return attention(q, k, v, "math", torch.ones(T, T, dtype=torch.bool).tril(1))


def dq_ten_percent_too_large(q, k, v):
    """A plausible kernel bug in the backward only: the output is exact, dQ is 1.1 times too large."""
    return TiledAttention.apply(q.detach() + 1.1 * (q - q.detach()), k, v)


@pytest.fixture
def kernel_stand_in(monkeypatch):
    """install(flash): kernels.cu replaced on CPU. The build returns a placeholder and
    FlashAttentionCUDA.apply runs flash; returns the placeholder and the list of flash's calls."""
    def install(flash):
        built, calls = object(), []
        monkeypatch.setattr(attention_lib, "_extension", None)
        monkeypatch.setattr(attention_lib, "_build_kernels", lambda: built)
        monkeypatch.setattr(attention_lib.FlashAttentionCUDA, "apply", lambda q, k, v: calls.append(q.shape) or flash(q, k, v))
        forget_cuda_warnings()
        return built, calls
    return install


def test_a_kernel_as_accurate_as_sdpa_passes_its_self_check_silently(kernel_stand_in):
    built, calls = kernel_stand_in(TiledAttention.apply)  # the algorithm of kernels.cu, on the CPU
    rng = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert attention_lib._flash_extension("cpu") is built
    assert [shape[-1] for shape in calls] == [64, 128]  # both head dims checked, once
    assert torch.equal(torch.get_rng_state(), rng)  # the training's random stream is untouched
    assert attention_lib._flash_extension("cpu") is built and len(calls) == 2


@pytest.mark.parametrize("wrong, names", [(one_key_too_many, ["out", "dq", "dk", "dv"]), (dq_ten_percent_too_large, ["dq"])])
def test_a_wrong_kernel_fails_its_self_check_with_the_numbers_and_sdpa_is_used_from_then_on(kernel_stand_in, wrong, names):
    _, calls = kernel_stand_in(wrong)
    with pytest.warns(UserWarning) as caught:
        reason = attention_lib._flash_extension("cpu")
    assert len(caught) == 1 and str(caught[0].message) == f"--attn cuda: {reason}; using sdpa"
    assert reason.startswith("kernels.cu failed its self-check against sdpa (causal, B=2, H=3, T=200, D=64; ")
    number = r"\d\.\de[-+]\d\d"
    found = re.findall(rf"(\w+) ({number}) \(sdpa ({number})\)", reason)
    assert [name for name, _, _ in found] == names  # each wrong one named, the right ones not
    assert all(float(ours) > 2 * float(sdpa) for _, ours, sdpa in found)
    with warnings.catch_warnings():  # from then on: the same verdict, no second check, no second warning
        warnings.simplefilter("error")
        assert attention_lib._flash_extension("cpu") == reason and len(calls) == 1


def test_a_kernel_that_raises_fails_its_self_check_in_one_line(kernel_stand_in):
    def launch_failure(q, k, v):
        raise RuntimeError("flash attention forward failed: invalid device function\nException raised from ...")
    kernel_stand_in(launch_failure)
    with pytest.warns(UserWarning, match="self-check: RuntimeError: flash attention forward failed: invalid device function; using sdpa$"):
        assert isinstance(attention_lib._flash_extension("cpu"), str)


# ----------------------------------------------------------------------------- a clear first build

@pytest.fixture
def toolchain(monkeypatch, tmp_path):
    """A CUDA 12.8 torch and a complete build toolchain, faked: ninja, a C++ compiler, and
    CUDA_HOME/bin/nvcc, a script that answers --version like CUDA 12.8's. Returns set_nvcc_release."""
    from torch.utils import cpp_extension
    (tmp_path / "bin").mkdir()
    compiler = tmp_path / "bin" / "c++"
    compiler.write_text("#!/bin/sh\n")
    compiler.chmod(0o755)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: True)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path))
    monkeypatch.setenv("CXX", str(compiler))

    def set_nvcc_release(release):
        nvcc = tmp_path / "bin" / "nvcc"
        nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.61'\n")
        nvcc.chmod(0o755)
    set_nvcc_release("12.8")
    return set_nvcc_release


def test_a_complete_toolchain_or_a_minor_cuda_mismatch_is_no_build_problem(toolchain):
    assert attention_lib._build_problem() is None
    toolchain("12.4")  # cpp_extension only warns when the minor versions differ
    assert attention_lib._build_problem() is None


def test_each_missing_piece_of_the_toolchain_is_named_with_its_fix(toolchain, monkeypatch, tmp_path):
    from torch.utils import cpp_extension
    toolchain("13.0")
    assert attention_lib._build_problem() == (f"{tmp_path}/bin/nvcc is CUDA 13.0, this torch is built with CUDA 12.8: "
                                          "set CUDA_HOME to a CUDA 12.x toolkit, or install a torch built for CUDA 13")
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    assert attention_lib._build_problem() == ("no nvcc: install the CUDA 12.8 toolkit and set CUDA_HOME to it "
                                          "(or put its bin/ on the PATH)")
    monkeypatch.setenv("CXX", "no-such-c++")
    assert attention_lib._build_problem() == "no C++ compiler 'no-such-c++': install g++ (apt install g++) or set CXX to one"
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: False)
    assert attention_lib._build_problem() == "ninja is missing (cpp_extension builds with it): pip install ninja"


def test_a_build_problem_is_one_warning_and_no_build(toolchain, monkeypatch):
    from torch.utils import cpp_extension
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: False)
    monkeypatch.setattr(cpp_extension, "load", lambda **kwargs: pytest.fail("a build was tried"))
    monkeypatch.setattr(attention_lib, "_extension", None)
    forget_cuda_warnings()
    with pytest.warns(UserWarning) as caught:
        assert attention_lib._flash_extension() == "kernels.cu cannot be built: ninja is missing (cpp_extension builds with it): pip install ninja"
    assert [str(w.message) for w in caught] == [
        "--attn cuda: kernels.cu cannot be built: ninja is missing (cpp_extension builds with it): pip install ninja; using sdpa"]


# what cpp_extension raises when ninja's build fails: the failed command's output follows the command
NVCC_FAILED = """Error building extension 'o1_flash_attention': [1/3] /usr/local/cuda/bin/nvcc -DTORCH_EXTENSION_NAME=o1_flash_attention -c kernels.cu -o kernels.cuda.o
FAILED: kernels.cuda.o
/usr/local/cuda/bin/nvcc -DTORCH_EXTENSION_NAME=o1_flash_attention -c kernels.cu -o kernels.cuda.o
kernels.cu(71): error: expected an expression
  int broken = ;
               ^

1 error detected in the compilation of "kernels.cu".
[2/3] c++ -MMD -MF kernels_binding.o.d -c kernels_binding.cpp -o kernels_binding.o
ninja: build stopped: subcommand failed.
"""
LINK_FAILED = """Error building extension 'o1_flash_attention': [1/1] c++ kernels.cuda.o kernels_binding.o -shared -lc10_cuda -o o1_flash_attention.so
FAILED: o1_flash_attention.so
c++ kernels.cuda.o kernels_binding.o -shared -lc10_cuda -o o1_flash_attention.so
/usr/bin/ld: cannot find -lc10_cuda: No such file or directory
collect2: error: ld returned 1 exit status
ninja: build stopped: subcommand failed.
"""


LOADER_FAILED = "libcudart.so.12: cannot open shared object file: No such file or directory"  # one line: all of it


@pytest.mark.parametrize("log, line", [(NVCC_FAILED, "kernels.cu(71): error: expected an expression"),
                                       (LINK_FAILED, "/usr/bin/ld: cannot find -lc10_cuda: No such file or directory"),
                                       (LOADER_FAILED, LOADER_FAILED)])
def test_a_failed_build_says_the_first_line_of_the_failed_command(toolchain, monkeypatch, log, line):
    from torch.utils import cpp_extension

    def failing_load(**kwargs):
        raise RuntimeError(log)
    monkeypatch.setattr(cpp_extension, "load", failing_load)
    assert attention_lib._build_kernels() == f"kernels.cu did not build: {line}"


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


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None, reason="no c++")
def test_the_binding_compiles_against_this_torchs_headers(tmp_path):
    """kernels_binding.cpp as cpp_extension compiles it (13 s). It needs no CUDA header: any torch will do."""
    import sysconfig
    from torch.utils.cpp_extension import include_paths
    includes = [*include_paths(), sysconfig.get_paths()["include"]]
    cmd = ["c++", "-std=c++17", "-fPIC", "-DTORCH_EXTENSION_NAME=o1_flash_attention", "-DTORCH_API_INCLUDE_EXTENSION_H",
           *(flag for path in includes for flag in ("-isystem", path)),
           "-c", os.path.join(ROOT, "kernels_binding.cpp"), "-o", str(tmp_path / "kernels_binding.o")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


# ----------------------------------------------------------------------------- kernels.cu on a GPU

@pytest.fixture(scope="module")
def flash():
    """The built extension (building it if needed); a GPU that should run it but cannot build it fails."""
    reason = cuda_kernel_unavailable()
    if reason:
        pytest.skip(reason)
    extension = attention_lib._flash_extension()
    assert not isinstance(extension, str), extension
    return attention_lib.FlashAttentionCUDA.apply


@pytest.mark.gpu
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("T", [1, 17, 63, 64, 65, 1000, 1023, 4096])
def test_cuda_kernel_is_as_accurate_as_sdpa_in_bf16(flash, T, D):
    q, k, v = random_qkv(T, B=2, H=3, D=D, device="cuda")
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).cuda()
    for name, (ours, sdpa) in attention_lib.flash_errors(flash, q, k, v, do).items():
        assert ours <= 2 * sdpa + 1e-4, f"{name}: error {ours:.2e}, SDPA's {sdpa:.2e}"


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
    cfg = GPTConfig(vocab_size=300, block_size=128, n_layer=2, n_head=2, n_embd=128)  # head dim 64
    torch.manual_seed(0)
    net = GPT(cfg, attn="cuda").cuda()
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

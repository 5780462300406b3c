"""Bad input gets one line that says what is wrong and a non-zero exit, never a traceback."""
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


def assert_one_line_error(result, *words):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("cli"))
    assert run("data/prepare.py", "--preset", "test", "--out", out).returncode == 0
    assert run("train_sft.py", "--preset", "test", "--out", out).returncode == 0
    return out


def test_unknown_preset():
    assert_one_line_error(run("train_sft.py", "--preset", "huge"), "invalid choice: 'huge'")
    assert_one_line_error(run("data/prepare.py", "--preset", "huge"), "invalid choice: 'huge'")


def test_missing_data_and_missing_checkpoint(tmp_path):
    assert_one_line_error(run("train_sft.py", "--preset", "test", "--out", str(tmp_path)), "data/prepare.py")
    assert run("data/prepare.py", "--preset", "test", "--out", str(tmp_path)).returncode == 0
    assert_one_line_error(run("search.py", "--preset", "test", "--out", str(tmp_path)), "no checkpoint at")
    assert_one_line_error(run("train_sft.py", "--preset", "test", "--out", str(tmp_path), "--resume"), "no checkpoint at")


def test_checkpoint_from_another_tokenizer_is_refused(trained, tmp_path):
    ckpt = torch.load(os.path.join(trained, "sft", "ckpt.pt"), weights_only=True)
    ckpt["tokenizer"] = "gpt2:feedbeef"
    os.makedirs(tmp_path / "sft")
    os.symlink(os.path.join(trained, "data"), tmp_path / "data")
    torch.save(ckpt, tmp_path / "sft" / "ckpt.pt")
    assert_one_line_error(run("search.py", "--preset", "test", "--out", str(tmp_path)), "tokenizer gpt2:feedbeef")


def test_malformed_problem_line_is_named_and_the_rest_are_answered(trained, tmp_path):
    problems = tmp_path / "problems.txt"
    problems.write_text("# two problems and a broken line\na = 7; c = 5; d = a * c; ? d\nd = a *; ? d\nb = 3; e = b + 1; ? e\n")
    result = run("search.py", "--preset", "test", "--out", trained, "--problems", str(problems), "--show")
    assert result.returncode == 1
    assert_one_line_error(result, "problems.txt:3", "cannot read assignment")
    answers = [line for line in result.stdout.splitlines() if not line.startswith("    ")]
    assert len(answers) == 3 and answers[1] == "-" and "tokens of thought" in answers[0]


@pytest.mark.parametrize("script, flag", [("train_sft", "--micro-batch"), ("train_sft", "--width"), ("train_prm", "--problems"),
                                          ("train_rl", "--group-size"), ("search", "--expand"), ("search", "--per-bin")])
def test_a_count_flag_below_one_is_refused_before_anything_runs(script, flag):
    main = __import__(script).main
    for value in ("0", "-1"):
        with pytest.raises(SystemExit, match=f"argument {flag}: {value}: give at least 1"):
            main(["--preset", "test", flag, value])
    with pytest.raises(SystemExit, match=f"argument {flag}: 'two' is not an integer"):
        main(["--preset", "test", flag, "two"])


@pytest.mark.parametrize("device, words", [("gpu", "not a device"), ("mps", "runs on cpu or cuda")])
def test_a_device_this_code_cannot_use_is_one_line(device, words):
    from common import UserError, setup_device
    with pytest.raises(UserError, match=words):
        setup_device(device)


@pytest.mark.parametrize("script", ["data.prepare", "train_sft", "train_prm", "train_rl", "search"])
def test_an_out_that_is_a_file_is_refused_before_anything_runs(script, tmp_path):
    main = __import__(script, fromlist=["main"]).main
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit, match="--out .*afile: a file, not a run directory"):
        main(["--preset", "test", "--out", str(tmp_path / "afile")])

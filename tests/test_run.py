"""run.sh, the README's main command: the whole pipeline end to end (the test preset), then again
with every stage skipped because its outputs are current."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ["prepare", "sft", "prm", "rl", "search (sft policy)", "sft (width 16)", "prepare (self-correction traces)",
          "sft (self-correction, width 16)", "search (rl policy)", "search (width 16)"]


def run_sh(out):
    env = dict(os.environ, PRESET="test", OUT=str(out), PYTHON=sys.executable)
    result = subprocess.run(["bash", "run.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return [line for line in result.stdout.replace("\r", "\n").splitlines() if line.startswith("run.sh: ")]


@pytest.mark.slow
def test_run_sh_runs_every_stage_once_and_skips_them_when_current(tmp_path):
    first = run_sh(tmp_path)
    for stage in STAGES:
        assert sum(line.startswith(f"run.sh: {stage} done in ") for line in first) == 1, (stage, first)
    report = (tmp_path / "report.md").read_text()
    assert "## The process reward model" in report and "## Self-correction" in report
    second = run_sh(tmp_path)
    for stage in STAGES:
        assert sum(line.startswith(f"run.sh: {stage} is up to date") for line in second) == 1, (stage, second)
    assert not any(" done in " in line for line in second)

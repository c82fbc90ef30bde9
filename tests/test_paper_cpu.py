"""sweeps/paper-cpu.yaml --smoke: the whole laptop reproduction pipeline, end to end (slow)."""

from __future__ import annotations

import html
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cfglab.sweep.layout import SweepDir

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_paper_cpu_smoke_opens_its_report_with_the_paper_table(tmp_path: Path) -> None:
    (tmp_path / "sweeps").mkdir()
    shutil.copytree(ROOT / "grammars", tmp_path / "grammars")
    text = (ROOT / "sweeps" / "paper-cpu.yaml").read_text()
    text = text.replace("storage: runs/sweeps", f"storage: {tmp_path / 'runs'}")
    (tmp_path / "sweeps" / "paper-cpu.yaml").write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "cfglab", "sweep", "sweeps/paper-cpu.yaml", "--smoke"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = SweepDir(tmp_path / "runs" / "paper-cpu-smoke")
    assert len(sweep.read_plan()) == 4
    for trial in sweep.read_plan():
        for kind in ("evaluate", "robustness", "probes", "attention"):
            assert sweep.read_result(trial.name, kind) is not None, (trial.name, kind)
    page = html.unescape((sweep.report_dir / "report.html").read_text())
    assert page.index("The paper's results at this budget") < page.index("<h2>Budget</h2>")
    for result in ("1 accuracy", "2 diversity", "7 boundary", "12 mode switch", "seed Q1"):
        assert result in page
    assert "Memorisation: the held-out rule" in page and "N14 -> N10 N12" in page
    for png in ("temperatures", "diversity", "robustness"):
        assert (sweep.report_dir / f"{png}.png").stat().st_size > 1000, png

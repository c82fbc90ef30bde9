"""Sweeps on Ray Tune: end to end, fault injection, kill and resume, the dashboard, a cluster.

The Ray tests are slow-marked (CI runs them). In-process sweeps share the session's Ray
(`ray_session`); the dashboard and cluster tests start their own, in subprocesses, and stop them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cfglab.runs import RunDir, TrainConfig
from cfglab.sweep.layout import SweepDir
from cfglab.sweep.spec import load_sweep
from cfglab.sweep.tasks import TASKS, accepted_options, load_target, run_task
from cfglab.sweep.trainable import CRASH_ENV, CRASH_MARKERS, Reporter, prepare_run_dir
from cfglab.train import train

GRAMMAR = """grammar small
start S
S -> A B | B A A
A -> "1" "2" | "3" | B "1"
B -> "2" "2" "3" | "1"
"""
TINY_TRAIN = (
    "{steps: STEPS, batch: 4, lr: 3.0e-3, checkpoint_every: CKPT, eval_every: EVAL, "
    "log_every: 5, eval_batches: 1, chunk_strings: 32}"
)
# The evaluations, sized to seconds: what `smoke` sections do for the shipped sweeps.
TINY_TASKS = """evaluate: {n: 12, options: {kl_strings: 4, reference_n: 20}}
robustness: {enabled: true, n: 6, temperatures: [1.0], cut: 2}
probes: {enabled: true, layers: [1], options: {n_strings: 24, n_test: 12, controls: false}}
"""


def sweep_file(
    tmp_path: Path,
    name: str,
    pes: str = "[abs, rot]",
    fractions: str = "[0, 0.1]",
    steps: int = 40,
    ckpt: int = 10,
    tasks: str = TINY_TASKS,
    extra: str = "",
    evals: int | None = None,
) -> Path:
    (tmp_path / "small.cfg").write_text(GRAMMAR)
    train_section = (
        TINY_TRAIN.replace("STEPS", str(steps))
        .replace("CKPT", str(ckpt))
        .replace("EVAL", str(evals or ckpt))
    )
    text = f"""name: {name}
grammars: [{tmp_path / "small.cfg"}]
model: {{pe: {pes}, size: {{layers: 1, heads: 2, dim: 16}}, context: 32}}
train: {train_section}
noise: {{fractions: {fractions}, rates: [0.2]}}
{tasks}
resources: {{cpu: 1, task_cpu: 1}}
max_concurrent: 2
storage: {tmp_path / "sweeps"}
{extra}"""
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop(CRASH_ENV, None)
    env.pop("RAY_ADDRESS", None)
    return {**env, **extra}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cfglab", *args]


def _starts(sweep: SweepDir) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for s in sweep.starts():
        out.setdefault(s.run, []).append(s.from_step)
    return out


def _assert_complete(sweep: SweepDir, kinds: list[str]) -> None:
    """Every trial trained to its last step, each metrics step once, every task's result saved."""
    for trial in sweep.read_plan():
        metrics = RunDir(sweep.run(trial.name)).metrics()
        steps = [m["step"] for m in metrics]
        assert steps and steps[-1] == trial.train["steps"], trial.name
        assert steps == sorted(set(steps)), f"{trial.name}: repeated or unordered metrics"
        for kind in kinds:
            record = sweep.read_result(trial.name, kind)
            assert record is not None and record["result"], f"{trial.name}: no {kind} result"


# --- without Ray -------------------------------------------------------------------------------


class _Checkpoint:
    """What the trainable needs of ray.tune.Checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def as_directory(self) -> Iterator[str]:
        yield str(self.path)


class _Stop(Exception):
    pass


def test_a_run_refilled_from_a_tune_checkpoint_continues_exactly(tmp_path: Path) -> None:
    (tmp_path / "small.cfg").write_text(GRAMMAR)
    cfg = TrainConfig(
        grammar=str(tmp_path / "small.cfg"),
        pe="rot",
        layers=1,
        heads=2,
        dim=16,
        context=32,
        batch=4,
        steps=30,
        lr=3e-3,
        checkpoint_every=10,
        eval_every=5,
        log_every=1,
        eval_batches=1,
        threads=1,
        chunk_strings=32,
    )
    whole = RunDir(train(cfg, tmp_path / "whole", quiet=True))
    staged = tmp_path / "tune_checkpoint"

    def stop_after_20(event: dict) -> None:  # stage what the trainable would report, then die
        if event.get("checkpoint") and event["step"] == 20:
            staged.mkdir()
            Reporter(tmp_path / "lost")._stage(Path(event["checkpoint"]), staged)
            raise _Stop

    with pytest.raises(_Stop):
        train(cfg, tmp_path / "lost", quiet=True, callback=stop_after_20)
    # the retry lands on another node: the run directory is not there, the checkpoint is
    resume, from_step = prepare_run_dir(tmp_path / "elsewhere", _Checkpoint(staged))
    assert (resume, from_step) == (True, 20)
    train(cfg, tmp_path / "elsewhere", quiet=True, resume=True)
    assert RunDir(tmp_path / "elsewhere").metrics() != []
    strip = [
        {k: v for k, v in m.items() if k != "tokens_per_s"}
        for m in RunDir(tmp_path / "elsewhere").metrics()
    ]
    assert strip == [{k: v for k, v in m.items() if k != "tokens_per_s"} for m in whole.metrics()]


def test_a_run_never_checkpointed_restarts_clean(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text("grammar: x\n")
    (run / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n')
    assert prepare_run_dir(run, None) == (False, 0)
    assert not run.exists()  # no stale metrics for the fresh start to append to


def test_every_task_function_exists_and_declares_its_options() -> None:
    for kind, target in TASKS.items():
        assert callable(load_target(target)), kind
        assert "threads" not in accepted_options(kind)  # the sweep sets threads itself
    assert {"n_strings", "n_test"} <= accepted_options("probes")
    assert {"kl_strings", "cut"} <= accepted_options("evaluate")


def test_run_task_calls_an_evaluation_from_plain_arguments(tmp_path: Path) -> None:
    (tmp_path / "small.cfg").write_text(GRAMMAR)
    cfg = TrainConfig(
        grammar=str(tmp_path / "small.cfg"),
        pe="abs",
        layers=1,
        heads=2,
        dim=16,
        context=32,
        batch=4,
        steps=10,
        checkpoint_every=10,
        eval_every=10,
        eval_batches=1,
        threads=1,
        chunk_strings=32,
    )
    run = train(cfg, tmp_path / "r", quiet=True)
    section = {
        "layers": [1],
        "seed": 0,
        "options": {"n_strings": 16, "n_test": 8, "controls": False, "plots": False},
    }
    record = run_task("probes", str(run), section, threads=1)
    assert record["kind"] == "probes" and record["seconds"] >= 0
    assert "1" in record["result"]["trained"]  # layer 1 probed, as the section asked
    assert (run / "probe" / "probe.json").exists()


# --- with Ray ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_crashed_trial_is_retried_from_its_checkpoint(
    tmp_path: Path, ray_session: str, monkeypatch
) -> None:
    from cfglab.sweep.tune import run_sweep

    monkeypatch.setenv(CRASH_ENV, "25")
    path = sweep_file(
        tmp_path,
        "crash",
        pes="[rot]",
        steps=40,
        ckpt=10,
        evals=5,
        tasks="probes: {enabled: true, layers: [1], options: {n_strings: 16, "
        "n_test: 8, controls: false}}\nevaluate: {enabled: false}",
    )
    outcome = run_sweep(load_sweep(path), dashboard=False, say=lambda m: None)
    assert set(outcome.statuses.values()) == {"TERMINATED"} and not outcome.interrupted
    sweep = SweepDir(outcome.sweep_dir)
    starts = _starts(sweep)
    assert len(starts) == 2
    for name, from_steps in starts.items():
        # crashed once at step 25 (first report past it), retried from the step-20 checkpoint
        assert from_steps == [0, 20], name
        assert (sweep.path / CRASH_MARKERS / name).read_text() == "25"
    _assert_complete(sweep, ["probes"])


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep exited ({proc.returncode}) before {what}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _trained_to_end(sweep: SweepDir, name: str, steps: int) -> bool:
    m = RunDir(sweep.run(name)).metrics() if sweep.run(name).exists() else []
    return bool(m) and m[-1]["step"] >= steps


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_interrupted_and_killed_sweeps_resume_without_retraining_finished_trials(
    tmp_path: Path, ray_session: str
) -> None:
    steps = 500  # long enough to be caught mid-run on a fast machine
    path = sweep_file(
        tmp_path,
        "resume",
        pes="[abs, rot, pos]",
        fractions="[0]",
        steps=steps,
        ckpt=30,
        extra="max_failures: 0\n",
        tasks="evaluate: {enabled: false}\nprobes: {enabled: true, layers: [1], "
        "options: {n_strings: 16, n_test: 8, controls: false}}",
    )
    path.write_text(path.read_text().replace("max_concurrent: 2", "max_concurrent: 1"))
    args = _cli("sweep", str(path), "--address", ray_session, "--no-dashboard")
    sweep = SweepDir(tmp_path / "sweeps" / "resume")
    first, second, third = (t.name for t in load_plan(path))

    # 1. Ctrl-C once the first trial finished: state saved, the resume command printed
    proc = subprocess.Popen(
        args,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _wait_for(lambda: _trained_to_end(sweep, first, steps), 240, "the first trial", proc)
    _wait_for(lambda: second in _starts(sweep), 120, "the second trial", proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "--resume" in err and str(path) in err
    assert sweep.has_tune_state()

    # 2. resume, then kill -9 in the middle of a trial
    proc = subprocess.Popen(
        args + ["--resume"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_for(
        lambda: (
            len(sweep.starts()) >= 3
            and any(
                RunDir(sweep.run(n)).checkpoints()
                for n in (second, third)
                if sweep.run(n).exists() and not _trained_to_end(sweep, n, steps)
            )
        ),
        240,
        "a trial with a checkpoint, mid-run",
        proc,
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)

    # 3. resume to the end
    done = subprocess.run(
        args + ["--resume"], env=_env(), capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-3000:]
    starts = _starts(sweep)
    assert starts[first] == [0], "a finished trial was trained again"
    assert all(s[0] == 0 for s in starts.values())
    assert sum(len(s) for s in starts.values()) > 3  # something was interrupted and resumed
    restarted = [s for s in starts.values() if len(s) > 1]
    assert restarted and all(s[-1] > 0 for s in restarted)  # ... from a checkpoint, not step 0
    _assert_complete(sweep, ["probes"])
    assert (sweep.report_dir / "report.html").stat().st_size > 0


def load_plan(path: Path):
    from cfglab.sweep.spec import expand

    return expand(load_sweep(path)).trials


class _Lines:
    """Collects a subprocess's stream line by line in a thread (to watch it while it runs)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def find(self, prefix: str) -> str | None:
        for line in self.lines:
            if prefix in line:
                return line.split(prefix, 1)[1].strip()
        return None


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_smoke_sweep_end_to_end_with_the_dashboard_on_loopback(tmp_path: Path) -> None:
    path = sweep_file(
        tmp_path,
        "e2e",
        steps=100,
        ckpt=50,
        extra="smoke: {train: {steps: 20, checkpoint_every: 10, eval_every: 10}}\n",
    )
    proc = subprocess.Popen(
        _cli("sweep", str(path), "--smoke", "--dashboard"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    err, out = _Lines(proc.stderr), _Lines(proc.stdout)
    try:
        _wait_for(lambda: err.find("Ray dashboard:") is not None, 180, "the dashboard URL", proc)
        url = err.find("Ray dashboard:")
        assert url.startswith("http://127.0.0.1:")
        status = _http_status(url, timeout=60)
        assert status == 200
        seen = _watch_names(url, proc)
        proc.wait(timeout=330)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err.thread.join(5)
    out.thread.join(5)
    assert proc.returncode == 0, "".join(err.lines)[-3000:]
    sweep = SweepDir(tmp_path / "sweeps" / "e2e-smoke")
    assert len(sweep.read_plan()) == 4
    _assert_complete(sweep, ["evaluate", "robustness", "probes"])
    html = (sweep.report_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "e2e" in html
    csv_lines = (sweep.report_dir / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 4 and "evaluate.accuracy.cut0.accuracy.rate" in csv_lines[0]
    for png in ("training", "accuracy", "probes", "robustness"):
        assert (sweep.report_dir / f"{png}.png").stat().st_size > 1000, png
    assert out.find("report:") is not None
    # the dashboard names trial actors, evaluation tasks and the job after the runs
    assert any(n.startswith("train small-") for n in seen["actors"]), seen
    assert any(n.startswith("evaluate small-") for n in seen["tasks"]), seen
    assert "sweep e2e-smoke" in seen["jobs"], seen


def _watch_names(url: str, proc: subprocess.Popen) -> dict[str, set[str]]:
    """Actor, task and job names the dashboard's state API shows while the sweep runs."""
    import json

    seen: dict[str, set[str]] = {"actors": set(), "tasks": set(), "jobs": set()}
    fields = {"actors": "repr_name", "tasks": "name", "jobs": None}

    def read(kind: str) -> list[dict]:
        path = "/api/jobs/" if kind == "jobs" else f"/api/v0/{kind}?detail=1&limit=1000"
        with urllib.request.urlopen(url + path, timeout=5) as r:
            body = json.loads(r.read())
        if kind == "jobs":  # the Jobs page's own list (drivers and submissions)
            return body if isinstance(body, list) else []
        return body.get("data", {}).get("result", {}).get("result", [])

    def poll() -> None:
        while proc.poll() is None:
            for kind, field in fields.items():
                try:
                    rows = read(kind)
                except (OSError, ValueError):
                    continue
                for row in rows:
                    if field is None:
                        name = (row.get("metadata") or {}).get("job_name")
                    else:
                        name = row.get(field)
                    if name:
                        seen[kind].add(name)
            time.sleep(1)

    threading.Thread(target=poll, daemon=True).start()
    return seen


def _http_status(url: str, timeout: float) -> int:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_smoke_sweep_on_a_cluster_started_with_ray_start(tmp_path: Path) -> None:
    port = _free_port()
    temp_dir = f"/tmp/rtc{os.getpid()}"  # a Ray of its own: socket paths stay short
    head = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={temp_dir}",
            "--block",
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        path = sweep_file(
            tmp_path,
            "cluster",
            pes="[rot]",
            steps=20,
            ckpt=10,
            tasks="evaluate: {enabled: false}\nprobes: {enabled: true, layers: "
            "[1], options: {n_strings: 16, n_test: 8, controls: false}}",
            extra="smoke: {train: {steps: 10}}\n",
        )
        deadline = time.time() + 120
        while True:  # `ray start` returns to --block before the head accepts drivers
            done = subprocess.run(
                _cli("sweep", str(path), "--smoke", "--address", f"127.0.0.1:{port}"),
                env=_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            if (
                done.returncode == 0
                or time.time() > deadline
                or "joined the Ray cluster" in done.stderr
            ):
                break
            time.sleep(2)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"joined the Ray cluster at 127.0.0.1:{port}" in done.stderr
        sweep = SweepDir(tmp_path / "sweeps" / "cluster-smoke")
        _assert_complete(sweep, ["probes"])
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its own processes
        head.wait(timeout=90)
    assert not _processes_mentioning(temp_dir), "the cluster's processes outlived it"
    shutil.rmtree(temp_dir, ignore_errors=True)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found

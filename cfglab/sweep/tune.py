"""Run a sweep on Ray Tune: the grid as trials, evaluations as Ray tasks, state for --resume.

    run_sweep(load_sweep("sweeps/quick.yaml"))            # local Ray, dashboard on loopback
    run_sweep(loaded, address="10.0.0.1:6379")             # join a running cluster
    run_sweep(loaded, resume=True)                        # continue an interrupted sweep

Trials train through `cfglab.sweep.trainable.train_trial`. When one completes, a Tune callback in
the driver submits its evaluations (`cfglab.sweep.tasks`) as Ray tasks, so they overlap with the
trials still training; the driver persists each result as it lands (SWEEP_DIR/results/) and
gathers the rest at the end. A resumed sweep restores Tune's state (finished trials stay
finished, unfinished and errored ones continue from their last checkpoint) and submits only the
tasks with no saved result.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ray import tune

from cfglab.errors import CfglabError
from cfglab.progress import PlainProgress, duration
from cfglab.runs import TrainConfig
from cfglab.sweep.layout import TUNE_NAME, SweepDir
from cfglab.sweep.spec import LoadedSweep, SweepPlan, TrialPlan, expand
from cfglab.sweep.tasks import applies, run_task
from cfglab.sweep.tracking import callbacks_for, forget, live
from cfglab.sweep.trainable import crash_step_from_env, train_trial

Say = Callable[[str], None]
DONE, ERROR, STOPPED = "TERMINATED", "ERROR", "STOPPED"


@dataclass
class SweepOutcome:
    sweep_dir: Path
    statuses: dict[str, str]  # trial name -> Tune status (TERMINATED, ERROR, PENDING, ...)
    task_errors: dict[str, str] = field(default_factory=dict)  # "run/kind" -> message
    interrupted: bool = False
    dashboard_url: str | None = None
    seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.statuses.items() if s == ERROR]

    @property
    def unfinished(self) -> list[str]:
        return [n for n, s in self.statuses.items() if s not in (DONE, ERROR)]


def sweep_dir_for(loaded: LoadedSweep) -> Path:
    """STORAGE/NAME, absolute (Tune runs trials in other working directories)."""
    storage = loaded.spec.storage
    if "://" in storage:
        raise CfglabError(
            f"{loaded.path}: storage {storage!r}: give a filesystem path that every "
            "node sees (a shared mount; for an object store, mount the bucket)"
        )
    return (Path(storage).expanduser().resolve()) / loaded.name


# --- Ray ---------------------------------------------------------------------------------------


class _QuietTune(logging.Filter):
    """Drop Tune's advice that names its Python API (`Tuner.restore(...)`): the CLI prints the
    cfglab command that resumes instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


def _quiet_logs() -> None:
    logger = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _QuietTune) for f in logger.filters):
        logger.addFilter(_QuietTune())


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise CfglabError("no free port for the Ray dashboard")


@contextmanager
def ray_runtime(
    address: str | None = None,
    dashboard: bool = True,
    verbose: bool = False,
    num_cpus: int | None = None,
    job_name: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Connect to Ray: the one this process already has, the cluster at `address` (or
    RAY_ADDRESS), or a fresh local instance. Yields {"address", "dashboard_url", "local"}."""
    import ray

    if ray.is_initialized():
        yield {"address": None, "dashboard_url": None, "local": False}
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    common: dict[str, Any] = {
        "logging_level": logging.INFO if verbose else logging.WARNING,
        "log_to_driver": verbose,
        "configure_logging": True,
    }
    if job_name:  # the dashboard's Jobs page shows it
        from ray.job_config import JobConfig

        common["job_config"] = JobConfig(metadata={"job_name": job_name})
    if address:
        ctx = ray.init(address=address, **common)
    else:
        # A laptop run: token authentication off (Ray 2.60 turns it on by default), and never
        # join a cluster found by accident (address="local" starts our own).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ctx = ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            dashboard_port=_free_port(8265),
            **common,
        )
    url = getattr(ctx, "dashboard_url", None) or None
    try:
        yield {
            "address": address,
            "dashboard_url": f"http://{url}" if url else None,
            "local": not address,
        }
    finally:
        ray.shutdown()


# --- evaluations as Ray tasks ------------------------------------------------------------------

# The live TaskPool of each sweep this process drives. Tune pickles its callbacks into the
# experiment state and hands back copies on restore, so the callback finds the pool by key.
_POOLS: dict[str, TaskPool] = {}


class TaskPool:
    """Evaluations of finished trials: submitted as Ray tasks, persisted as they land."""

    def __init__(
        self,
        sweep: SweepDir,
        trials: list[TrialPlan],
        sections: dict[str, dict[str, Any]],
        cpu: float,
        gpu: float,
        threads: int,
        say: Say = lambda _m: None,
    ) -> None:
        self.sweep, self.sections, self.say = sweep, sections, say
        self.train = {t.name: t.train for t in trials}
        self.cpu, self.gpu, self.threads = cpu, gpu, threads
        self.in_flight: dict[Any, tuple[str, str]] = {}  # ObjectRef -> (run, kind)
        self.errors: dict[str, str] = {}
        self.trials: list[Any] = []  # Tune's Trial objects, refreshed every controller step
        self.landed = 0  # tasks finished (or failed) in this process, for "3/8 done"

    def missing(self, name: str) -> list[str]:
        busy = {kind for run, kind in self.in_flight.values() if run == name}
        return [
            k
            for k in self.sections
            if applies(k, self.train[name])
            and k not in busy
            and self.sweep.read_result(name, k) is None
        ]

    def submit(self, name: str) -> int:
        import ray

        remote = ray.remote(run_task)
        kinds = self.missing(name)
        for kind in kinds:
            self.errors.pop(f"{name}/{kind}", None)
            # the dashboard's Tasks page lists it as e.g. "evaluate mini-rot-clean-s0"
            options = dict(num_cpus=self.cpu, num_gpus=self.gpu, max_retries=1)
            ref = remote.options(name=f"{kind} {name}", **options).remote(
                kind,
                str(self.sweep.run(name)),
                self.sections[kind],
                self.threads,
                "cuda" if self.gpu > 0 else "cpu",
            )
            self.in_flight[ref] = (name, kind)
            self.say(f"{kind} {name} submitted")
        return len(kinds)

    def poll(self, timeout: float = 0.0) -> int:
        """Persist whatever has finished; returns how many landed."""
        import ray

        if not self.in_flight:
            return 0
        ready, _ = ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=timeout)
        for ref in ready:
            name, kind = self.in_flight.pop(ref)
            self.landed += 1
            count = f"{self.landed}/{self.landed + len(self.in_flight)} tasks done"
            try:
                record = ray.get(ref)
            except Exception as err:  # the task's own exception, wrapped by Ray
                self.errors[f"{name}/{kind}"] = _last_line(err)
                self.say(f"{kind} {name} failed ({count}): {self.errors[f'{name}/{kind}']}")
                continue
            self.sweep.write_result(name, kind, {"run": name, **record})
            self.track(name, kind, record)
            self.say(f"{kind} {name} finished in {duration(record['seconds'])} ({count})")
        return len(ready)

    def track(self, name: str, kind: str, record: dict[str, Any]) -> None:
        """The evaluation's summary into the trial's trackers (MLflow, W&B, TensorBoard)."""
        trackers = live(str(self.sweep.path))
        trial = next((t for t in self.trials if t.config.get("run") == name), None)
        if trackers is not None and trial is not None:
            trackers.log_evaluation(trial, kind, record)

    def wait_all(self, advance: Callable[[int], None] = lambda n: None) -> None:
        while self.in_flight:
            advance(self.poll(timeout=1.0))


def _last_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None) or err
    text = f"{type(cause).__name__}: {cause}".strip()
    return text.splitlines()[-1] if text else repr(err)


class TaskCallback(tune.Callback):
    """Submits a trial's evaluations the moment it completes; polls them every step.

    Holds only a key: Tune pickles callbacks into its experiment state and restores copies."""

    def __init__(self, key: str) -> None:
        self.key = key

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pool = _POOLS.get(self.key)
        if pool is not None:
            pool.submit(trial.config["run"])

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        pool = _POOLS.get(self.key)
        if pool is not None:
            pool.trials = list(trials)
            pool.poll()


class TrialLines(tune.Callback):
    """Plain lines for the trials in place of Tune's output when not verbose: Tune prints every
    trial's whole config (its coordinates and ~40 `train/*` fields) as it starts, and at `verbose`
    0 prints only the experiment's header and trial errors. Here: one line per trial started,
    with its coordinates, and its training progress (`PlainProgress`, every tenth of its steps).

    Holds only a key (printing goes through the sweep's TaskPool's `say`) and drops its progress
    state when Tune pickles it: a restored sweep starts its clocks afresh."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.bars: dict[str, PlainProgress] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.key, self.bars = state["key"], {}

    def _say(self, message: str) -> None:
        pool = _POOLS.get(self.key)
        if pool is not None:
            pool.say(message)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pool, name = _POOLS.get(self.key), trial.config["run"]
        if pool is None or name not in pool.train:
            return
        self._say(started_line(trial.config))
        step = int((trial.last_result or {}).get("step", 0))  # a restored trial goes on from here
        # the plan's steps: a trial restored by Tune.restore may hold `train` in another shape
        self.bars[name] = PlainProgress(
            f"train {name}",
            int(pool.train[name]["steps"]),
            start=step,
            every_s=60.0,
            say=self._say,
        )

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        bar = self.bars.get(trial.config["run"])
        if bar is not None and "step" in result:
            loss = [f"{result[k]:.4f}" for k in ("loss", "val_loss") if k in result]
            bar.update(int(result["step"]), f"loss {' / held-out '.join(loss)}" if loss else "")


def started_line(config: dict[str, Any]) -> str:
    """`trial NAME started: pe=rot, seed=0`: the trial's coordinates, not its whole config."""
    skip = ("run", "train")
    coordinates = [
        f"{k}={v}" for k, v in config.items() if k not in skip and not isinstance(v, dict | tuple)
    ]
    return f"trial {config['run']} started" + (f": {', '.join(coordinates)}" if coordinates else "")


def tune_output(key: str, verbose: bool) -> tuple[int, list[tune.Callback]]:
    """Tune's verbosity and the callbacks that print in its place: Tune's own output (each
    trial's config, results, status tables) only when verbose."""
    if verbose:
        return 2, []
    return 0, [TrialLines(key)]


# --- the sweep ---------------------------------------------------------------------------------


def _trial_name(trial: Any) -> str:
    return trial.config["run"]


def _context(sweep: SweepDir, trials: list[TrialPlan]) -> dict[str, Any]:
    return {
        "sweep_dir": str(sweep.path),
        "trials": {
            t.name: {"name": t.name, "coordinates": t.coordinates, "train": t.train} for t in trials
        },
        # the sweep's own copies: what the runs started on, even if a source file changed
        "grammar_texts": {
            t.coordinates["grammar"]: Path(t.train["grammar"]).read_text() for t in trials
        },
        "crash_at_step": crash_step_from_env(),
    }


class _Coordinate:
    """tune.sample_from's function: one coordinate of the trial named by its grid value `run`
    (Tune resolves the grid first, then these, per trial, into the trial's config)."""

    def __init__(self, table: dict[str, Any], key: str) -> None:
        self.table, self.key = table, key

    def __call__(self, config: dict[str, Any]) -> Any:
        return self.table[config["run"]][self.key]


def param_space(trials: list[TrialPlan]) -> dict[str, Any]:
    """{"run": grid over names, each coordinate (pe, noise_fraction, seed, ...), "train": the
    resolved TrainConfig}: what every tracker records of a trial."""
    table = {t.name: {**t.coordinates, "train": dict(t.train)} for t in trials}
    keys = list(trials[0].coordinates) + ["train"] if trials else []
    space: dict[str, Any] = {"run": tune.grid_search([t.name for t in trials])}
    space.update({k: tune.sample_from(_Coordinate(table, k)) for k in keys if k != "run"})
    return space


def _trainable(sweep: SweepDir, plan: SweepPlan, trials: list[TrialPlan]) -> type[tune.Trainable]:
    r = plan.spec.resources
    return tune.with_resources(
        named_trainable(tune.with_parameters(train_trial, context=_context(sweep, trials))),
        {"cpu": r.cpu, "gpu": r.gpu},
    )


def named_trainable(fn: Callable[..., Any]) -> type:
    """Tune's class for a function trainable, whose actors call themselves `train RUN`.

    Ray's dashboard names an actor by its repr (Actors page, and the Tasks page's groups); Tune's
    own class returns the function's name, the same for every trial."""
    from ray.tune.trainable.function_trainable import wrap_function

    base = wrap_function(fn)

    class NamedTrial(base):  # type: ignore[misc, valid-type]
        def __repr__(self) -> str:
            return f"train {self.config.get('run', '?')}"

    NamedTrial.__name__ = NamedTrial.__qualname__ = "train_trial"
    return NamedTrial


def _tuner(
    sweep: SweepDir,
    plan: SweepPlan,
    trials: list[TrialPlan],
    restore: bool,
    verbose: bool,
    loaded: LoadedSweep,
) -> tune.Tuner:
    trainable = _trainable(sweep, plan, trials)
    callbacks = callbacks_for(loaded, str(sweep.path))  # also on restore: sets Tune's env
    if restore:
        return tune.Tuner.restore(
            str(sweep.tune_dir), trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    spec = plan.spec
    verbosity, printers = tune_output(str(sweep.path), verbose)
    return tune.Tuner(
        trainable,
        param_space=param_space(trials),
        tune_config=tune.TuneConfig(
            max_concurrent_trials=spec.max_concurrent,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=TUNE_NAME,
            storage_path=str(sweep.path),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[TaskCallback(str(sweep.path)), *printers, *callbacks],
            verbose=verbosity,
            log_to_file=True,
        ),
    )


def _check_same_plan(sweep: SweepDir, trials: list[TrialPlan]) -> None:
    """--resume continues the grid it started (threads and device may change, as in train).
    Both sides go through TrainConfig first: a field added to cfglab since the sweep started
    compares at its default, as the trials' own run directories do when they resume."""

    def key(t: TrialPlan) -> dict[str, Any]:
        try:
            train = TrainConfig(**t.train).model_dump()
        except ValidationError:  # a field this cfglab no longer knows: a different grid
            train = dict(t.train)
        return {k: v for k, v in train.items() if k not in ("grammar", "threads", "device")}

    old = {t.name: key(t) for t in sweep.read_plan()}
    new = {t.name: key(t) for t in trials}
    if old != new:
        changed = sorted(set(old) ^ set(new)) or sorted(n for n in new if old[n] != new[n])
        raise CfglabError(
            f"{sweep.path}: the sweep file changed since this sweep started (differs at: "
            f"{', '.join(changed[:5])}); --resume continues the same grid: give a new `name` "
            "for a new sweep"
        )


def prepare(
    loaded: LoadedSweep, resume: bool, say: Say
) -> tuple[SweepDir, SweepPlan, list[TrialPlan], bool]:
    """Lay out the sweep directory; (dir, plan, trials, restore Tune's state?)."""
    plan = expand(loaded)
    sweep = SweepDir(sweep_dir_for(loaded))
    if sweep.exists() and not resume:
        raise CfglabError(
            f"{sweep.path} already holds sweep {loaded.name!r}: add --resume to "
            "continue it, or change `name`/`storage` for a new sweep"
        )
    if sweep.exists():
        _check_same_plan(sweep, plan.trials)
    elif resume:
        say(f"nothing to resume in {sweep.path}: starting the sweep")
    trials = sweep.write_plan(plan)
    restore = sweep.has_tune_state()
    if not restore and sweep.tune_dir.exists():  # killed before Tune saved anything
        shutil.rmtree(sweep.tune_dir)
    return sweep, plan, trials, restore


def _refuse_mounted_save() -> None:
    """nnsight (CONFIG.APP.PYMOUNT, its default) writes a `save` method into `object` itself, so
    every Ray actor handle's `save` resolves to it instead of the actor's remote method and Tune's
    first trial checkpoint fails (or the sweep stalls). Say so before any trial starts."""
    if hasattr(object(), "save"):
        raise CfglabError(
            "something in this process (nnsight's PYMOUNT, by default) mounted a `save` method "
            "on every Python object, which breaks Ray Tune's trial checkpoints. Run the sweep in "
            "a process that has not imported nnsight, or call nnsight._c.unmount('save') first "
            "(then use nnsight.save(x) instead of x.save())."
        )


def run_sweep(
    loaded: LoadedSweep,
    *,
    address: str | None = None,
    resume: bool = False,
    dashboard: bool = True,
    verbose: bool = False,
    say: Say = print,
    progress: Callable[[int], Any] | None = None,
) -> SweepOutcome:
    """Run (or continue) a whole sweep; returns each trial's status and any task errors.

    `progress(total)` may return a function advance(n) used while waiting for evaluations."""
    started = time.perf_counter()
    _refuse_mounted_save()
    # Tune warns each time a checkpoint forces an experiment snapshot: noise for small, fast
    # trials (the snapshots still happen).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not verbose:
        _quiet_logs()
    sweep, plan, trials, restore = prepare(loaded, resume, say)
    spec = plan.spec
    sections = {k: getattr(spec, k).model_dump(mode="json") for k in spec.task_kinds()}
    say(f"{loaded.name}: {len(trials)} trials{' (resumed)' if restore else ''} → {sweep.path}")
    with ray_runtime(address, dashboard, verbose, job_name=f"sweep {loaded.name}") as ray_info:
        if ray_info["dashboard_url"]:
            say(f"Ray dashboard: {ray_info['dashboard_url']}")
        elif ray_info["address"]:
            say(f"joined the Ray cluster at {ray_info['address']}")
        pool = TaskPool(
            sweep,
            trials,
            sections,
            spec.resources.task_cpu,
            spec.resources.task_gpu,
            spec.resources.task_threads,
            say,
        )
        _POOLS[str(sweep.path)] = pool
        try:
            outcome = _fit_and_gather(sweep, plan, trials, restore, verbose, pool, progress, loaded)
        finally:
            _POOLS.pop(str(sweep.path), None)
            trackers = live(str(sweep.path))
            if trackers is not None:
                trackers.close(pool.trials)
            forget(str(sweep.path))
    outcome.dashboard_url = ray_info["dashboard_url"]
    outcome.seconds = time.perf_counter() - started
    return outcome


def _status(status: str, last_result: dict[str, Any] | None) -> str:
    """Tune marks trials it stops on Ctrl-C TERMINATED too: done means training reported done."""
    if status == DONE and not (last_result or {}).get("done"):
        return STOPPED
    return status


def _statuses(pool: TaskPool, results: Any, trials: list[TrialPlan]) -> dict[str, str]:
    seen = {t.config["run"]: _status(str(t.status), t.last_result) for t in pool.trials}
    if not seen and results is not None:  # no controller step ran (everything finished before)
        for r in results:
            seen[r.config["run"]] = ERROR if r.error else _status(DONE, r.metrics)
    return {t.name: seen.get(t.name, "PENDING") for t in trials}


def _fit_and_gather(
    sweep: SweepDir,
    plan: SweepPlan,
    trials: list[TrialPlan],
    restore: bool,
    verbose: bool,
    pool: TaskPool,
    progress: Callable[[int], Any] | None,
    loaded: LoadedSweep,
) -> SweepOutcome:
    results = None
    try:
        results = _tuner(sweep, plan, trials, restore, verbose, loaded).fit()
    except KeyboardInterrupt:
        pool.poll()
        return SweepOutcome(sweep.path, _statuses(pool, None, trials), dict(pool.errors), True)
    statuses = _statuses(pool, results, trials)
    outcome = SweepOutcome(sweep.path, statuses)
    if any(s not in (DONE, ERROR) for s in statuses.values()):  # Ctrl-C: Tune saved its state
        pool.poll()
        outcome.interrupted = True
        outcome.task_errors = dict(pool.errors)
        return outcome
    for name, status in statuses.items():
        if status == DONE:
            pool.submit(name)
    try:
        if progress is not None and pool.in_flight:
            advance = progress(len(pool.in_flight))
            pool.wait_all(advance)
        else:
            pool.wait_all()
    except KeyboardInterrupt:
        pool.poll()
        outcome.interrupted = True
    outcome.task_errors = dict(pool.errors)
    return outcome

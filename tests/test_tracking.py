"""Tracking through Ray Tune: trial configs as params/hparams, evaluation summaries in MLflow."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from cfglab.errors import CfglabError
from cfglab.sweep.spec import load_sweep
from tests.test_sweep import sweep_file

EVAL_ONLY = "evaluate: {n: 8, sections: [accuracy, kl], options: {kl_strings: 4}}"


def _events(path: Path):
    """Events of a TensorBoard file (TFRecord frames: length, crc, data, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    data, at = path.read_bytes(), 0
    while at + 12 <= len(data):
        (n,) = struct.unpack("<Q", data[at : at + 8])
        yield Event.FromString(data[at + 12 : at + 12 + n])
        at += 12 + n + 4


def _hparams(trial_dir: Path) -> dict[str, object]:
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    found: dict[str, object] = {}
    for f in trial_dir.glob("events.out.tfevents.*"):
        for ev in _events(f):
            for v in ev.summary.value:
                if v.tag == "_hparams_/session_start_info":
                    info = HParamsPluginData.FromString(v.metadata.plugin_data.content)
                    for k, val in info.session_start_info.hparams.items():
                        found[k] = val.WhichOneof("kind") and getattr(val, val.WhichOneof("kind"))
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_smoke_sweep_records_configs_and_accuracy_in_mlflow_and_tensorboard(
    tmp_path: Path, ray_session: str
) -> None:
    from mlflow.tracking import MlflowClient

    from cfglab.sweep.tune import run_sweep

    extra = (
        "tracking: {tensorboard: true, mlflow: {tracking_uri: mlruns}, "
        "wandb: {project: cfgtest, mode: offline}}"
    )
    path = sweep_file(
        tmp_path,
        "tracked",
        pes="[abs, rot]",
        fractions="[0]",
        steps=20,
        ckpt=10,
        tasks=EVAL_ONLY,
        extra=extra,
    )
    outcome = run_sweep(load_sweep(path), dashboard=False, say=lambda m: None)
    assert set(outcome.statuses.values()) == {"TERMINATED"}, outcome
    client = MlflowClient((tmp_path / "mlruns").as_uri())
    exp = client.get_experiment_by_name("tracked")
    runs = {r.data.tags["trial_name"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == set(outcome.statuses)
    for name, r in runs.items():
        pe = "abs" if "-abs-" in name else "rot"
        assert r.data.params["pe"] == pe and r.data.params["seed"] == "0"
        assert r.data.params["noise_fraction"] == "0.0" and r.data.params["train/steps"] == "20"
        acc = r.data.metrics["evaluate/cut0_accuracy"]
        saved = outcome.sweep_dir / "results"
        assert 0.0 <= acc <= 1.0 and "evaluate/kl" in r.data.metrics and saved.exists()
        assert "loss" in r.data.metrics  # training's own reports too
        # the last Tune checkpoint carries the final weights (a run refilled elsewhere has them)
        assert list((outcome.sweep_dir / "tune" / name).glob("checkpoint_*/model.safetensors"))
        hp = _hparams(outcome.sweep_dir / "tune" / name)
        files = list((outcome.sweep_dir / "tune" / name).iterdir())
        assert hp.get("pe") == pe and hp.get("noise_fraction") == 0.0, (hp, files)
        assert hp.get("train/lr") == 3e-3, hp
    # W&B offline: the trial's config, then its evaluation summary (the same run id, resumed)
    offline = b"".join(f.read_bytes() for f in (outcome.sweep_dir / "wandb").rglob("*.wandb"))
    assert offline.count(b"noise_fraction") >= 2 and b"evaluate/cut0_accuracy" in offline


def test_tracking_section_is_validated_with_its_location(tmp_path: Path) -> None:
    path = sweep_file(tmp_path, "bad", extra="tracking: {wandb: {mode: offline}, mlfow: {}}")
    with pytest.raises(CfglabError) as err:
        load_sweep(path)
    text = str(err.value)
    assert "tracking.wandb.project" in text and "tracking.mlfow" in text
    assert "bad.yaml:" in text


def test_param_space_resolves_each_trials_coordinates(tmp_path: Path) -> None:
    from ray.tune.search.variant_generator import generate_variants

    from cfglab.sweep.spec import expand
    from cfglab.sweep.tune import param_space

    plan = expand(load_sweep(sweep_file(tmp_path, "p", pes="[abs, rot]", fractions="[0, 0.1]")))
    resolved = [cfg for _, cfg in generate_variants(param_space(plan.trials))]
    by_name = {t.name: t for t in plan.trials}
    assert sorted(c["run"] for c in resolved) == sorted(by_name)
    for c in resolved:
        t = by_name[c["run"]]
        assert (
            c["pe"] == t.coordinates["pe"]
            and c["noise_fraction"] == t.coordinates["noise_fraction"]
        )
        assert c["train"] == t.train


def test_summary_metrics_of_an_evaluation() -> None:
    from cfglab.sweep.tracking import summary_metrics

    record = {
        "kind": "evaluate",
        "result": {
            "accuracy": {
                "cut0": {
                    "accuracy": {"rate": 0.25, "k": 1, "n": 4},
                    "ended_with_eos": {"rate": 1.0},
                }
            },
            "kl": {"mean": 0.5},
        },
    }
    assert summary_metrics("evaluate", record) == {
        "evaluate/cut0_accuracy": 0.25,
        "evaluate/cut0_ended_with_eos": 1.0,
        "evaluate/kl": 0.5,
    }
    probes = {"result": {"layers": {"1": {"accuracy": 0.75, "n": 40}}, "note": "x"}}
    assert summary_metrics("probes", probes) == {"probes/layers/1/accuracy": 0.75}


def test_train_tensorboard_writes_scalars_and_hparams(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cfglab.cli import app
    from tests.test_sweep import GRAMMAR

    (tmp_path / "g.cfg").write_text(GRAMMAR)
    args = [
        "train",
        "--grammar",
        str(tmp_path / "g.cfg"),
        "--pe",
        "rot",
        "--layers",
        "1",
        "--dim",
        "16",
        "--context",
        "32",
        "--batch",
        "4",
        "--steps",
        "20",
        "--checkpoint-every",
        "10",
        "--threads",
        "1",
        "--tensorboard",
        "--out",
        str(tmp_path / "r"),
        "--quiet",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    files = list((tmp_path / "r" / "tensorboard").rglob("events.out.tfevents.*"))
    tags, hparams = set(), {}
    for f in files:
        for ev in _events(f):
            tags |= {v.tag for v in ev.summary.value}
        hparams |= _hparams(f.parent)
    assert {"train/loss", "train/val_loss", "train/lr"} <= tags
    assert hparams["pe"] == "rot" and hparams["steps"] == 20.0 and hparams["tensorboard"] is True

"""Shared fixtures. Ray is started only by tests that ask for `ray_session`."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

# Set for every test process (and inherited by the Ray workers and CLI subprocesses it starts).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[str]:
    """One small local Ray for the whole session: 2 CPUs, no dashboard, an 80 MB object store,
    a short temp dir (socket paths have a length limit). Yields the GCS address, which a CLI
    subprocess can join with `--address`. Shut down at the end."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ctx = ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024 * 1024,
        _temp_dir=f"/tmp/rt{os.getpid() % 100000}",  # one per session: parallel runs never share
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()


# Files whose tests start Ray clusters of their own (CLI subprocesses, `ray start`): they and the
# tests that use `ray_session` share one xdist worker, so one machine never runs two clusters.
OWN_CLUSTERS = {"test_sweep.py", "test_paper_cpu.py", "test_tracking.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`make test` runs `pytest -n 2 --dist loadgroup`: each file stays on one worker (its
    module fixtures are built once), and every file that touches Ray goes to the same one."""
    ray_files = set(OWN_CLUSTERS) | {
        item.path.name for item in items if "ray_session" in getattr(item, "fixturenames", ())
    }
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group("ray" if name in ray_files else name))

"""``dissect --shards``: the pass as Ray tasks on a real local Ray of 2 CPUs, merged into the catalog
the one-process job writes; killed workers (a real SIGKILL of the task's process), a shard that
keeps dying, and resuming after it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's local instance on the loopback only
import ray  # noqa: E402

from milan_core.catalog import Catalog  # noqa: E402
from milan_core.config import DissectConfig  # noqa: E402
from milan_core.dissect import dissect  # noqa: E402
from milan_core.errors import UserError  # noqa: E402
from milan_core.images import find_images  # noqa: E402
from milan_core.sharding import (  # noqa: E402
    Shard,
    catalog_differences,
    dissect_sharded,
    ray_cluster,
    shard_checkpoint_path,
    split,
    task_cpus,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray of 2 CPUs for the module's tests (its start takes seconds), stopped after."""
    with ray_cluster(None, 2):
        assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
        yield


def assert_same_catalog(expected: Path, got: Path) -> None:
    assert catalog_differences(expected, got) == []


def shard_pids(title: str) -> list[int]:
    """The processes whose title Ray set to ``ray::<title>`` (the worker running that task now)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if command == f"ray::{title}":
            found.append(int(entry.name))
    return found


class Killer(threading.Thread):
    """SIGKILLs the worker of one shard each time a new attempt of it starts, ``times`` times."""

    def __init__(self, title: str, times: int) -> None:
        super().__init__(daemon=True)
        self.title, self.times, self.killed = title, times, []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and len(self.killed) < self.times:
            for pid in shard_pids(self.title):
                if pid not in self.killed:
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
            time.sleep(0.02)


def test_split_covers_the_images_in_order_with_sizes_one_apart() -> None:
    assert split(36, 2) == [Shard(0, 2, 0, 18), Shard(1, 2, 18, 36)]
    shards = split(10, 4)
    assert [(s.start, s.stop) for s in shards] == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert split(5, 1) == [Shard(0, 1, 0, 5)]


def test_a_local_shard_holds_its_share_of_the_cores_and_a_cluster_shard_one() -> None:
    cores = os.cpu_count() or 1
    assert task_cpus(None, 1) == cores  # one shard runs with the one-process job's threads
    assert task_cpus(None, 2 * cores) == 1
    assert task_cpus("auto", 1) == 1


def test_the_progress_counter_imports_no_torch() -> None:
    """Ray's process for the counter imports its module: keeping torch out of it keeps that
    process's start off the shards' cores."""
    done = subprocess.run([sys.executable, "-c", "import sys, milan_core.sharding_progress; "
                           "print(sorted(m for m in ('torch', 'ray', 'pandas') if m in sys.modules))"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def ray_processes() -> set[int]:
    """The pids of every Ray head process on this machine (its GCS server and raylets)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            name = (entry / "comm").read_text().strip() if entry.name.isdigit() else ""
        except OSError:
            continue
        if name in ("gcs_server", "raylet"):
            found.add(int(entry.name))
    return found


def test_the_command_starts_its_own_ray_and_stops_it(
    small_catalog: Path, small_config: DissectConfig, tmp_path: Path
) -> None:
    """Runs before the module's shared Ray starts: the command's own Ray is gone when it ends."""
    before = ray_processes()
    out = tmp_path / "command.duckdb"
    command = [sys.executable, "-m", "milan_core", "dissect", "--images", small_config.images,
               "--layers", ",".join(small_config.layers), "--k", "5", "--batch-size", "8", "--workers", "0",
               "--shards", "2", "--out", str(out)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "read 36 images" in done.stdout and "36/36" in done.stderr
    assert_same_catalog(small_catalog, out)
    assert ray_processes() <= before


def test_the_command_joins_a_running_cluster_with_its_token_and_leaves_it_running(
    small_catalog: Path, small_config: DissectConfig, tmp_path: Path
) -> None:
    """A cluster with Ray's token authentication (a token made, then ``ray start --head``, which turns
    it on when a token exists), then the command with ``--ray-address`` and the token: the one-process
    catalog, and the cluster still up after."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths live under it
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}  # the head writes its token under HOME
    before = ray_processes()
    token = [sys.executable, "-m", "ray.scripts.scripts", "get-auth-token", "--generate"]  # as a cluster's admin does
    subprocess.run(token, env=env, capture_output=True, timeout=120, check=True)
    head = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}", "--num-cpus=2",
            "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={home / 'r'}"]
    started = subprocess.run(head, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert started.returncode == 0, started.stderr
    try:
        assert "Token authentication is enabled" in started.stderr
        out = tmp_path / "joined.duckdb"
        command = [sys.executable, "-m", "milan_core", "dissect", "--images", small_config.images,
                   "--layers", ",".join(small_config.layers), "--k", "5", "--batch-size", "8", "--workers", "0",
                   "--shards", "2", "--ray-address", f"127.0.0.1:{port}", "--out", str(out)]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
                              env={**env, "RAY_AUTH_MODE": "token"})
        assert done.returncode == 0, done.stderr
        assert_same_catalog(small_catalog, out)
        assert ray_processes() - before  # the command did not stop the cluster it joined
    finally:
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], env=env,
                       capture_output=True, timeout=120, check=False)
        shutil.rmtree(home, ignore_errors=True)


def test_ray_address_without_shards_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    from milan_core.cli import main

    assert main(["dissect", "--ray-address", "auto", "--out", str(tmp_path / "c.duckdb")]) == 2
    assert not (tmp_path / "c.duckdb").exists()
    assert capsys.readouterr().err.strip() == (
        "error: --ray-address needs --shards N (the number of Ray tasks to split the images into)")


def test_two_shards_write_the_one_process_catalog(
    local_ray: None, small_catalog: Path, small_config: DissectConfig, tmp_path: Path
) -> None:
    out = tmp_path / "sharded.duckdb"
    started = time.perf_counter()
    summary = dissect_sharded(small_config, out, shards=2)
    wall = time.perf_counter() - started
    assert summary.n_images == 36 and summary.n_units == 1360 and summary.resumed_from == 0
    assert summary.run_id == small_config.resolved_run_id()
    assert_same_catalog(small_catalog, out)
    with Catalog(out) as catalog, Catalog(small_catalog) as one_process:
        recorded, expected = catalog.run().config, one_process.run().config
    assert recorded["shards"] == "2"  # and the backend and device the shards ran on, as the one process records
    assert (recorded["backend"], recorded["device"]) == (expected["backend"], expected["device"])
    assert not list(tmp_path.glob("*.resume"))
    with Catalog(out) as catalog:
        timings = catalog.run().timings  # the stages add up to the job's wall time before the write
    assert list(timings) == ["ray", "worker", "model", "pass", "merge"] and min(timings.values()) >= 0
    assert sum(timings.values()) <= wall and summary.seconds >= sum(timings.values())  # none counted twice
    changed = tmp_path / "changed.duckdb"  # the comparison sees a threshold moved past its bin
    changed.write_bytes(out.read_bytes())
    with Catalog(changed, writable=True) as catalog, catalog.transaction() as con:
        con.execute("UPDATE units SET threshold = act_max + 1 WHERE layer = 'blocks.6' AND unit = 3")
    assert catalog_differences(small_catalog, changed) == ["1 thresholds differ by more than a histogram bin"]


def test_a_killed_shard_is_retried_and_the_run_completes(
    local_ray: None, small_catalog: Path, small_config: DissectConfig, tmp_path: Path
) -> None:
    killer = Killer("dissect-shard-2-of-2", times=1)
    killer.start()
    out = tmp_path / "retried.duckdb"
    try:
        summary = dissect_sharded(small_config, out, shards=2, retries=2)
    finally:
        killer.stop.set()
        killer.join()
    assert len(killer.killed) == 1  # the worker really died once mid-task
    assert summary.n_images == 36
    assert_same_catalog(small_catalog, out)


def test_a_shard_that_keeps_dying_names_its_images_leaves_the_catalog_and_resumes(
    local_ray: None, small_catalog: Path, small_config: DissectConfig, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "kept.duckdb"
    out.write_bytes(small_catalog.read_bytes())  # an existing catalog: a failed run must not touch it
    before = out.read_bytes()
    killer = Killer("dissect-shard-2-of-2", times=2)  # the first attempt and its one retry
    killer.start()
    try:
        with pytest.raises(UserError) as failed:
            dissect_sharded(small_config, out, shards=2, retries=1)
    finally:
        killer.stop.set()
        killer.join()
    probes = find_images(Path(small_config.images))
    message = str(failed.value)
    assert "\n" not in message and "shard 2 of 2" in message
    assert probes[18].path in message and probes[35].path in message and "died" in message.lower()
    assert out.read_bytes() == before
    run_id = small_config.resolved_run_id()
    first, second = split(36, 2)
    assert shard_checkpoint_path(out, run_id, first).is_file()
    assert not shard_checkpoint_path(out, run_id, second).exists()
    capsys.readouterr()

    summary = dissect_sharded(small_config, out, shards=2)  # only the second shard runs again
    assert summary.resumed_from == 18 and summary.n_images == 36
    assert f"resuming run {run_id}: 1 of 2 shards were done (18 images)" in capsys.readouterr().err
    assert_same_catalog(small_catalog, out)
    assert not shard_checkpoint_path(out, run_id, first).exists()




def test_a_mistake_in_a_shard_is_the_one_process_jobs_line(local_ray: None, small_config: DissectConfig,
                                                           tmp_path: Path) -> None:
    wrong = replace(small_config, layers=("blocks.99",))
    with pytest.raises(UserError) as one_process:
        dissect(wrong, tmp_path / "one.duckdb")
    with pytest.raises(UserError) as sharded:
        dissect_sharded(wrong, tmp_path / "sharded.duckdb", shards=2)
    assert str(sharded.value) == str(one_process.value)
    assert not (tmp_path / "sharded.duckdb").exists()

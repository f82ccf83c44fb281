"""What would stop a dissection's final write is found before the pass (one line, exit 2), and a
lock met at the end is waited out, or the finished pass is kept for the next run to write."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from milan_core import dissect as dissect_module
from milan_core.catalog import Catalog
from milan_core.cli import main
from milan_core.config import DissectConfig
from milan_core.dissect import checkpoint_path, dissect
from milan_core.errors import UserError

HOLD = "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'read'); " \
       "print('held', flush=True); time.sleep(float(sys.argv[3]))"


def hold_lock(path: Path, seconds: float, mode: str = "write") -> subprocess.Popen:
    """Another process holding the catalog open (``read``: as the app does) for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), mode, str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def dissect_args(probe_dir: Path, out: Path) -> list[str]:
    return ["dissect", "--images", str(probe_dir), "--layers", "blocks.6", "--k", "3", "--max-images", "4",
            "--workers", "0", "--out", str(out)]


def assert_fails_before_the_pass(code: int, err: str, phrase: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], err
    assert "dissect:" not in err  # the progress bar never started


def test_a_file_that_is_not_duckdb_or_a_folder_fails_before_the_pass(
    probe_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.duckdb"
    notes.write_text("my notes")
    code = main(dissect_args(probe_dir, notes))
    assert_fails_before_the_pass(code, capsys.readouterr().err, "is not a DuckDB catalog")
    assert notes.read_text() == "my notes"
    code = main(dissect_args(probe_dir, tmp_path))
    assert_fails_before_the_pass(code, capsys.readouterr().err, "is a folder")


def test_a_catalog_locked_by_another_process_fails_before_the_pass(
    probe_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c.duckdb"
    Catalog(out, writable=True).close()
    holder = hold_lock(out, 60)
    try:
        code = main(dissect_args(probe_dir, out))
    finally:
        holder.kill()
        holder.wait()
    assert_fails_before_the_pass(code, capsys.readouterr().err, "in use by another process")


def test_a_read_only_filesystem_fails_before_the_pass(probe_dir: Path, tmp_path: Path) -> None:
    """A real read-only mount, in a user and mount namespace of its own (no root needed)."""
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    if shutil.which("unshare") is None or subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True, check=False
    ).returncode:
        pytest.skip("unshare cannot make a mount namespace here")
    command = " ".join([
        f"mount -t tmpfs -o ro none {readonly} &&", sys.executable, "-m", "milan_core",
        *dissect_args(probe_dir, readonly / "catalog.duckdb"),
    ])
    result = subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], check=False)
    err = "\n".join(line for line in result.stderr.splitlines() if "warn" not in line.lower())
    assert_fails_before_the_pass(result.returncode, err, "Read-only file system")


@pytest.fixture()
def config(small_config: DissectConfig) -> DissectConfig:
    return replace(small_config, layers=("blocks.6",), k=3, max_images=6)


def lock_before_writing(monkeypatch: pytest.MonkeyPatch, out: Path, seconds: float) -> list[subprocess.Popen]:
    """The app opening the catalog (read-only) just as the pass ends, for ``seconds``."""
    holders: list[subprocess.Popen] = []
    build = dissect_module.build_tables

    def build_then_lock(*args, **kwargs):
        holders.append(hold_lock(out, seconds, "read"))
        return build(*args, **kwargs)

    monkeypatch.setattr(dissect_module, "build_tables", build_then_lock)
    return holders


def test_a_brief_lock_at_the_final_write_is_waited_out(
    config: DissectConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "c.duckdb"
    Catalog(out, writable=True).close()
    holders = lock_before_writing(monkeypatch, out, 2.0)
    summary = dissect(config, out)
    assert holders[0].wait(timeout=30) == 0  # the holder let go by itself, then the write went in
    with Catalog(out) as catalog:
        assert len(catalog.units(summary.run_id)) == 320
    assert not checkpoint_path(out, summary.run_id).exists()


def test_a_lock_that_stays_keeps_the_finished_pass_for_the_next_run(
    config: DissectConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "c.duckdb"
    Catalog(out, writable=True).close()
    holders = lock_before_writing(monkeypatch, out, 600)
    resume = checkpoint_path(out, config.resolved_run_id())
    try:
        with pytest.raises(UserError, match=f"in use by another process for 1 s .*kept in {resume}"):
            dissect(config, out, lock_wait=1.0)
    finally:
        holders[0].kill()
        holders[0].wait()
    assert resume.is_file()
    monkeypatch.undo()
    summary = dissect(config, out)
    assert summary.resumed_from == 6 and summary.n_images == 6  # written without a new pass
    assert not resume.exists()
    with Catalog(out) as catalog:
        assert len(catalog.units(summary.run_id)) == 320

"""The command line: bad input gives one line and exit code 2, interruptions leave the catalog intact."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from milan_core.catalog import Catalog
from milan_core.cli import main
from milan_core.dissect import checkpoint_path
from milan_core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_line_error(code: int, err: str, *phrases: str) -> None:
    assert code == 2
    lines = [
        line for line in err.splitlines()
        if line.strip() and "warn" not in line.lower() and not line.startswith(("dissect:", "note: "))  # progress
    ]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in lines[0]


@pytest.fixture()
def mixed_dir(probe_dir: Path, tmp_path: Path) -> Path:
    """Six good photos, a text file named .jpg, a truncated JPEG, and a README that is ignored."""
    folder = tmp_path / "mixed"
    nested = folder / "nested"
    nested.mkdir(parents=True)
    good = sorted(probe_dir.iterdir())[:6]
    for path in good:
        shutil.copy(path, nested / path.name)
    (folder / "broken.jpg").write_text("this is not an image")
    (folder / "truncated.jpg").write_bytes(good[0].read_bytes()[:2000])
    (folder / "README.txt").write_text("not a photo")
    return folder


@pytest.mark.parametrize(
    "argv, phrases",
    [
        (["--images", "/no/such/folder"], ["image folder not found", "/no/such/folder"]),
        (["--model", "no-such-net"], ["unknown model", "no-such-net"]),
        (["--layers", "blocks.2,blocks.99"], ["unknown layer", "blocks.99", "layers --model"]),
        (["--quantile", "1.5"], ["--quantile"]),
        (["--k", "0"], ["--k"]),
        (["--checkpoint-every", "-1"], ["--checkpoint-every"]),
        (["--model", "resnet18", "--weights", "/no/weights.pt"], ["weights file not found"]),
        (["--model", "no_such_module_xyz:build"], ["no module named", "no_such_module_xyz"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], probe_dir: Path, tmp_path: Path, argv: list[str], phrases: list[str]
) -> None:
    out = tmp_path / "c.duckdb"
    base = ["dissect", "--images", str(probe_dir), "--out", str(out), "--max-images", "2", "--workers", "0"]
    code, _, err = run_cli(capsys, *base, *argv)
    assert_one_line_error(code, err, *phrases)
    assert not out.exists()


def test_empty_folder_and_a_file_instead_of_a_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos here")
    code, _, err = run_cli(capsys, "dissect", "--images", str(empty), "--out", str(tmp_path / "c.duckdb"))
    assert_one_line_error(code, err, "no images", str(empty))
    code, _, err = run_cli(capsys, "dissect", "--images", str(empty / "notes.txt"), "--out", str(tmp_path / "c.duckdb"))
    assert_one_line_error(code, err, "wants a folder")


def test_weights_that_do_not_fit_are_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, probe_dir: Path
) -> None:
    weights = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(1)}, weights)
    code, _, err = run_cli(capsys, "dissect", "--model", "resnet18", "--weights", str(weights),
                           "--images", str(probe_dir), "--out", str(tmp_path / "c.duckdb"))
    assert_one_line_error(code, err, "does not fit resnet18")


def test_unreadable_files_are_skipped_counted_and_named(
    capsys: pytest.CaptureFixture[str], mixed_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "c.duckdb"
    code, stdout, err = run_cli(capsys, "dissect", "--images", str(mixed_dir), "--out", str(out),
                                "--layers", "blocks.6", "--k", "3", "--workers", "0")
    assert code == 0
    assert "read 6 images" in stdout and "skipped 2" in stdout and "wrote 320 units" in stdout
    assert "broken.jpg" in err and "truncated.jpg" in err
    with Catalog(out) as catalog:
        run = catalog.run()
        assert (run.n_images, run.n_skipped) == (6, 2)
        labels = set(catalog.query("SELECT label FROM images").label)
        assert labels <= {"nested"} | {p.name.split("_")[0] for p in (mixed_dir / "nested").iterdir()}


def test_a_folder_of_only_broken_files_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG not really")
    code, _, err = run_cli(capsys, "dissect", "--images", str(folder), "--out", str(tmp_path / "c.duckdb"),
                           "--workers", "0")
    assert_one_line_error(code, err, "could be read")


def test_layers_lists_names_and_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "layers", "--model", "efficientnet-lite0")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "(40, 28, 28)" in rows["blocks.2"] and "(1000,)" in rows["classifier"]


def test_a_module_callable_model(capsys: pytest.CaptureFixture[str], probe_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.duckdb"
    code, stdout, _ = run_cli(capsys, "dissect", "--model", "torchvision.models:resnet18", "--images", str(probe_dir),
                              "--layers", "layer4", "--max-images", "4", "--k", "2", "--out", str(out),
                              "--workers", "0")
    assert code == 0 and "wrote 512 units" in stdout


def test_a_newer_schema_is_refused_with_a_sentence(
    capsys: pytest.CaptureFixture[str], small_catalog: Path, tmp_path: Path
) -> None:
    newer = tmp_path / "newer.duckdb"
    shutil.copy(small_catalog, newer)
    with Catalog(newer, writable=True) as catalog:
        catalog.con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    for writable in (False, True):
        with pytest.raises(UserError, match="newer than this code"):
            Catalog(newer, writable=writable)
    code, _, err = run_cli(capsys, "dissect", "--images", "/x", "--out", str(newer))
    assert code == 2


def _start_dissect(images: Path, out: Path, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "milan_core", "dissect", "--images", str(images),
               "--max-images", "400", "--batch-size", "4", "--workers", "0", "--layers", "blocks.6",
               "--out", str(out), "--run-id", "interrupted", "--checkpoint-every", "0"]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("w"),
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_progress(process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        done = [int(n) for n in re.findall(r"\| *(\d+)/400", log.read_text())]
        if done and 8 <= max(done) <= 300:  # tqdm skips counts on a fast machine: any mid-pass count will do
            return
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"the job did not get going: {log.read_text()[-500:]}")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_an_interrupted_job_leaves_the_catalog_as_it_was(
    small_catalog: Path, many_photos: Path, tmp_path: Path, how: int
) -> None:
    out = tmp_path / "catalog.duckdb"
    shutil.copy(small_catalog, out)
    before = digest(out)
    log = tmp_path / "stderr.txt"
    process = _start_dissect(many_photos, out, log)
    _wait_for_progress(process, log)
    process.send_signal(how)
    code = process.wait(timeout=60)
    assert digest(out) == before
    with Catalog(out) as catalog:
        assert "interrupted" not in set(catalog.runs().run_id)
    assert checkpoint_path(out, "interrupted").is_file()  # what a rerun resumes from (see test_dissect)
    if how == signal.SIGINT:
        assert code == 130
        assert "the catalog was not changed" in log.read_text() and "last checkpoint" in log.read_text()
        assert "Traceback" not in log.read_text()


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid``, from /proc (Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc (Linux)")
def test_a_killed_job_takes_its_decoding_worker_with_it(many_photos: Path, tmp_path: Path) -> None:
    log = tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "milan_core", "dissect", "--images", str(many_photos), "--workers", "1",
               "--batch-size", "32", "--layers", "blocks.6", "--out", str(tmp_path / "c.duckdb")]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("w"),
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while "| 32/432" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the worker has decoded a batch and is making the next ones
        workers = _children(process.pid)
        assert workers and process.poll() is None, log.read_text()[-500:]
    finally:
        process.kill()
        process.wait(timeout=30)
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for pid in left:  # don't leave it behind for the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, "the decoding worker outlived its killed job"


def test_every_command_is_registered_and_no_command_module_imports_the_cli() -> None:
    """cli imports each command module's register() itself: none can vanish, and no cycle back."""
    from milan_core.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    commands = {"dissect", "layers", "migrate", "describe", "evaluate", "audit", "ablate", "edit"}
    assert set(subparsers.choices) == commands
    check = ("import sys, milan_core.describe.command, milan_core.applications.command; "
             "print('milan_core.cli' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"

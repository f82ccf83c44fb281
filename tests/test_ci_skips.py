"""The skip policy itself, run on small test files by pytest's own pytester."""

from __future__ import annotations

from pathlib import Path

import probe_data
import pytest

TESTS = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("a browser is missing")

@pytest.mark.shared
def test_needs_shared():
    pytest.skip("the shared data is missing")
"""


@pytest.fixture()
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest("from ci_skips import *\n")
    pytester.makeini("[pytest]\nmarkers =\n    shared: needs ../shared/data\n")
    pytester.makepyfile(test_some=TESTS, test_module="import pytest\npytest.importorskip('no_such_module_xyz')\n")
    return pytester


def test_outside_ci_a_skip_is_a_skip(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    suite.runpytest_inprocess("--continue-on-collection-errors").assert_outcomes(passed=1, skipped=3)


def test_in_ci_an_undeclared_skip_fails(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(probe_data, "SHARED", tmp_path / "absent")
    result = suite.runpytest_inprocess("--continue-on-collection-errors")
    result.assert_outcomes(passed=1, failed=1, skipped=1, errors=1)  # the shared test's skip is declared
    result.stdout.fnmatch_lines(["*skipped in CI, where every test must run*a browser is missing*"])


def test_in_ci_with_the_shared_data_present_a_shared_test_may_not_skip(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CI", "true")
    present = tmp_path / "shared"
    present.mkdir()
    monkeypatch.setattr(probe_data, "SHARED", present)
    suite.runpytest_inprocess("--continue-on-collection-errors").assert_outcomes(passed=1, failed=2, errors=1)

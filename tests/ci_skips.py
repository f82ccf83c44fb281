"""The suite's skip policy, as pytest hooks (imported by tests/conftest.py).

``@pytest.mark.shared`` tests skip where ``../shared/data`` is absent. When ``CI`` is set, any
other skip -- a test's, or a whole module's (``pytest.importorskip``) -- is turned into a failure:
a green CI run means that every test it expects to run ran.
"""

from __future__ import annotations

import os

import probe_data
import pytest


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _allowed_skip(item: pytest.Item) -> bool:
    """The one declared reason to skip in CI: a ``shared`` test where ../shared/data is absent."""
    return item.get_closest_marker("shared") is not None and not probe_data.SHARED.is_dir()


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    return str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not probe_data.SHARED.is_dir():
        for item in items:
            if item.get_closest_marker("shared"):
                item.add_marker(pytest.mark.skip(reason=probe_data.SHARED_MISSING))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if _ci() and report.skipped and not hasattr(report, "wasxfail") and not _allowed_skip(item):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {_reason(report)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if _ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"module skipped in CI, where every test must run: {_reason(report)}"

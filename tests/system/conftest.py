"""Fixtures for the cairn system tests: a real cairnd on a free loopback port per test.

`cairn` gives a started daemon with the default test config; mark a test with
`@pytest.mark.cairn(max_associations=2, ...)` to override config keys. `cairn_factory` makes
more (or unstarted) daemons. Every daemon is SIGTERMed at teardown and must exit 0; one that
died on its own during a test fails the test. Tests never skip: a missing tool is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from archivelib import clear_immutable_below
from harness import CAIRNCTL, CAIRND, ECHOSCU, STORESCU, TEST_FILES, Cairn, finish


def pytest_configure(config):
    config.addinivalue_line("markers", "cairn(**overrides): config overrides for `cairn`")


@pytest.fixture(scope="session", autouse=True)
def _tools_present():
    missing = [str(p) for p in (CAIRND, CAIRNCTL, Path(STORESCU), Path(ECHOSCU))
               if not Path(p).exists()]
    if shutil.which("sqlite3") is None:
        missing.append("sqlite3")
    if not TEST_FILES.is_dir():
        missing.append(str(TEST_FILES))
    assert not missing, f"system tests need: {missing} (tools/test installs and builds them)"


@pytest.fixture(scope="session", autouse=True)
def _removable_temp(tmp_path_factory):
    """The files of archived studies keep the immutable attribute `cairnd run` gave them after
    their test: it is cleared below pytest's temp base at the end of the session, so that
    pytest's own cleanup of old runs can remove them."""
    yield
    clear_immutable_below(tmp_path_factory.getbasetemp())


@pytest.fixture
def cairn_factory(tmp_path):
    made: list[Cairn] = []
    errors: list[str] = []

    def make(name: str | None = None, start: bool = True, **overrides) -> Cairn:
        c = Cairn(tmp_path / (name or f"cairn{len(made)}"), **overrides)
        made.append(c)
        if start:
            c.start()
        return c

    yield make
    for c in made:
        try:
            finish(c)
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, "\n".join(errors)


@pytest.fixture
def cairn(request, cairn_factory):
    marker = request.node.get_closest_marker("cairn")
    overrides = dict(marker.kwargs) if marker else {}
    return cairn_factory("cairn", **overrides)


@pytest.fixture(scope="session")
def test_files_dir() -> Path:
    return TEST_FILES


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session")


def pytest_report_header(config):
    return [f"cairnd: {CAIRND} (exists={CAIRND.exists()})",
            f"pydicom test files: {TEST_FILES}",
            f"uid={os.getuid()}"]

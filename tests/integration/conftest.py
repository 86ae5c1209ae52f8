"""Shared pytest fixtures for the integration tests (real binary, real sockets, loopback)."""
import pytest

from framecast_test import Processes
from redis_server import Redis


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def procs(request):
    """Starts processes for a test and makes sure none outlives it. When the test failed, the
    end of every process's log goes into the report: a failure in CI can be read from it."""
    p = Processes()
    yield p
    p.stop_all()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for i, proc in enumerate(p.all):
            tail = proc.stderr[-4000:].decode(errors="replace")
            rep.sections.append((f"process {i} stderr: {' '.join(proc.args)[:200]}", tail))


@pytest.fixture
def redis(request, tmp_path):
    """A real redis-server of this test's own (tests needing it skip when it is not installed).
    When the test failed, the end of its log goes into the report."""
    r = Redis(tmp_path)
    r.start()
    yield r
    r.kill()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        rep.sections.append((f"redis-server log (port {r.port})", r.log_tail()))

"""Shared pytest fixtures for the integration tests (real binary, real sockets, loopback)."""
import pytest

from framecast_test import Processes
from redis_server import Redis


@pytest.fixture
def procs():
    """Starts processes for a test and makes sure none outlives it."""
    p = Processes()
    yield p
    p.stop_all()


@pytest.fixture
def redis(tmp_path):
    """A real redis-server of this test's own (tests needing it skip when it is not installed)."""
    r = Redis(tmp_path)
    r.start()
    yield r
    r.kill()

"""Shared pytest fixtures for the integration tests (real binary, real sockets, loopback)."""
import pytest

from framecast_test import Processes


@pytest.fixture
def procs():
    """Starts processes for a test and makes sure none outlives it."""
    p = Processes()
    yield p
    p.stop_all()

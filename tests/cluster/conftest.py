"""Fixtures for the cluster tests (opt in with ``pytest.mark.usefixtures``)."""

import logging

import pytest


@pytest.fixture
def quiet_transport_logs():
    """Keep the transport's expected warnings (links swept, peers gone) out of the test output."""
    logging.getLogger("eco.transport").setLevel(logging.ERROR)
    yield
    logging.getLogger("eco.transport").setLevel(logging.NOTSET)

"""Tests run on one torch thread (the CI machine has two cores and pytest may share them), and
without the network: any connection to a host other than this machine fails the test, so the
suite shows that no study, probe or report reaches out (the dataset download is tested
against a server on 127.0.0.1)."""

import socket

import pytest
import torch

torch.set_num_threads(1)

LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost", "0.0.0.0"}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    real = socket.socket.connect

    def connect(self, address):
        host = address[0] if isinstance(address, tuple) else None
        if self.family == getattr(socket, "AF_UNIX", None) or host in LOCAL_HOSTS:
            return real(self, address)
        raise AssertionError(f"a test tried to reach the network: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)


@pytest.fixture(autouse=True)
def _one_thread_after():
    """A command given ``--threads N`` sets this process's torch thread count; put it back, so
    that a later test's in-process computation is not run at another count (results at
    different thread counts differ in the last bits)."""
    yield
    torch.set_num_threads(1)

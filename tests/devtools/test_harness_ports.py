"""Ports for SIP listeners the harness and the test peers start: free over UDP and TCP, the next
number free over TCP too (baresip puts SIP over TLS there), and below the ephemeral range, where
no outgoing connection elsewhere on the machine can take them before the listener binds."""

from __future__ import annotations

import socket

import pytest
from phoneagent.devtools.harness import demo


def test_a_sip_port_is_free_on_both_transports_with_the_next_one_and_below_the_ephemeral_range() -> None:
    for _ in range(20):
        port = demo.free_udp_port()
        assert demo.LISTEN_PORTS[0] <= port < min(demo.LISTEN_PORTS[1], demo._ephemeral_low())
        for number, kind in (
            (port, socket.SOCK_DGRAM),
            (port, socket.SOCK_STREAM),
            (port + 1, socket.SOCK_STREAM),
        ):
            assert demo.port_free("127.0.0.1", number, kind), (number, kind)


def listener_after_a_free_port() -> tuple[socket.socket, int]:
    """A TCP listener on a port whose number before it is free over UDP and TCP, and that number."""
    for _ in range(50):
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        candidate = taken.getsockname()[1] - 1
        if demo.port_free("127.0.0.1", candidate, socket.SOCK_DGRAM) and demo.port_free(
            "127.0.0.1", candidate, socket.SOCK_STREAM
        ):
            return taken, candidate
        taken.close()
    raise AssertionError("no listener with a free port just before it")


def test_a_port_whose_next_number_is_taken_over_tcp_is_never_handed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken, candidate = listener_after_a_free_port()
    with taken:
        # the only candidate in range is the one before the listener: it is passed over
        monkeypatch.setattr(demo, "LISTEN_PORTS", (candidate, candidate + 3))
        monkeypatch.setattr(demo, "_ephemeral_low", lambda: 65535)
        port = demo.free_udp_port()
        assert port != candidate
        assert demo.port_free("127.0.0.1", port + 1, socket.SOCK_STREAM)

"""TCP_NODELAY on multiprocessing's manager sockets, which carry calls to a shared copy.

Beam's multi_process_shared serves a shared model through a multiprocessing manager
on a localhost TCP socket. multiprocessing sends a message over 16 KiB as two writes,
its 4-byte length and then the payload, and leaves Nagle's algorithm on: the
payload's last segment then waits for the receiver's delayed ACK. Measured here
(bench/shared_overhead.py): a batch of 32 x 256 tokens took 44 ms per call to a copy
that returned at once, against about 1 ms for other shapes; with TCP_NODELAY, about
1 ms too. Sockets are switched over where multiprocessing creates them (its
``SocketClient`` and ``SocketListener.accept``), in every process that imports this
module; they are only ever loopback connections between one machine's processes.
"""
from __future__ import annotations

import socket
from multiprocessing import connection

_done = False


def _no_delay(fd: int) -> None:
    s = socket.socket(fileno=socket.dup(fd))  # a duplicate: options act on the shared socket
    try:
        if s.family in (socket.AF_INET, socket.AF_INET6):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    finally:
        s.close()


def enable_no_delay() -> None:
    global _done
    if _done:
        return
    client, accept = connection.SocketClient, connection.SocketListener.accept

    def socket_client(address):
        conn = client(address)
        _no_delay(conn.fileno())
        return conn

    def socket_accept(self):
        conn = accept(self)
        _no_delay(conn.fileno())
        return conn

    connection.SocketClient = socket_client
    connection.SocketListener.accept = socket_accept
    _done = True

"""`BlackHoleProxy`: a TCP forwarder that can swallow traffic, a network partition without root."""
from __future__ import annotations

import socket
import threading

from harness.process import free_port


class BlackHoleProxy:
    """Forwards 127.0.0.1:`port` to `target_port`; `black_hole()` swallows traffic both ways.

    Sockets stay open while traffic is swallowed, like a partition (no RST, no FIN).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.blocked = threading.Event()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def black_hole(self) -> None:
        self.blocked.set()

    def restore(self) -> None:
        self.blocked.clear()

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()

    def _track(self, *sockets: socket.socket) -> bool:
        """Remember sockets for `close`; False (and closed) when the proxy is closing."""
        with self._lock:
            if not self._closed.is_set():
                self._sockets.extend(sockets)
                return True
        for sock in sockets:
            sock.close()
        return False

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.blocked.is_set():
                self._track(client)  # never answered: a connect into the void
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            if self._track(client, upstream):
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(None)
        while not self._closed.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if self.blocked.is_set():
                continue  # swallowed
            try:
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

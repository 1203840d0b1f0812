"""The real web tier (`create_app`) served in this process behind a `Recorder`, for the drill's own stack."""
from __future__ import annotations

import bisect
import io
import json
import threading
import time

from harness.faults.event_logs import Stored
from harness.process import free_port


class Recorder:
    """WSGI middleware: records every aggregate the web tier stored (201) and when it answered."""

    def __init__(self, app) -> None:
        self.app = app
        self.stored: list[Stored] = []
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != "/api/v1/readings" or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        status: list[str] = []

        def record_status(code, headers, exc_info=None):
            status.append(code)
            return start_response(code, headers, exc_info)

        arrived = time.time()
        result = self.app(environ, record_status)
        data = b"".join(result)
        if hasattr(result, "close"):
            result.close()
        if status and status[0].startswith("201"):
            doc = json.loads(body)
            with self._lock:  # in arrival order: the order the web tier stored them in
                bisect.insort(self.stored, Stored(f"{doc['group']}:{doc['epoch']}:{doc['round']}", doc, arrived,
                                                  time.time()), key=lambda s: s.arrived)
        return [data]

    def after(self, t: float) -> list[Stored]:
        """Aggregates answered after `t`, in the order they were stored."""
        with self._lock:
            return [s for s in self.stored if s.answered > t]


class WebTier:
    """The real web tier (`create_app`) behind a `Recorder`, served by werkzeug; can go down and up.
    `wrap`, if given, wraps the app inside the recorder (a WSGI middleware playing a fault)."""

    def __init__(self, settings, wrap=None) -> None:
        from webapp import create_app

        self.app = create_app(settings)
        self.recorder = Recorder(wrap(self.app) if wrap else self.app)
        self.port = free_port()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        """Serve on `port` (the same one again after `stop`); returns the tier."""
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", self.port, self.recorder, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

"""TF Serving's REST API (``POST /v1/models/NAME[/versions/N]:predict``) with requests.

Row format: ``{"signature_name": …, "instances": [[…window…], …]}`` answered by
``{"predictions": [score, …]}``; errors are ``{"error": msg}`` with 400/404/5xx, mapped to
`webapp.inference.errors`. One `requests.Session` per process, created on first use.
"""
from __future__ import annotations

import os
import threading

import numpy as np
import requests

from webapp.inference.errors import InferenceError
from webapp.inference.errors import InputRejected
from webapp.inference.errors import ModelNotFound
from webapp.inference.errors import ServingTimeout
from webapp.inference.errors import ServingUnavailable
from webapp.inference.signature import SIGNATURE

_STATUS = {400: InputRejected, 404: ModelNotFound, 429: ServingUnavailable, 503: ServingUnavailable,
           504: ServingTimeout}


class RestBackend:
    """Scores windows with TF Serving over HTTP/JSON.

    Parameters
    ----------
    base_url
        ``http://host:port`` of TF Serving's REST API (8501).
    timeout_s
        Connect and read timeout of each call.
    """

    kind = "rest"

    def __init__(self, base_url: str, timeout_s: float = 0.25):
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._session: requests.Session | None = None

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        with self._lock:
            if self._session is None or self._pid != os.getpid():
                self._session, self._pid = requests.Session(), os.getpid()
            session = self._session
        url = f"{self.base_url.rstrip('/')}{path}"
        try:
            response = session.request(method, url, json=body, timeout=self.timeout_s)
        except requests.Timeout as exc:
            raise ServingTimeout(f"no answer from {url} within {self.timeout_s}s") from exc
        except requests.ConnectionError as exc:
            raise ServingUnavailable(f"cannot reach {url}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError as exc:
            raise InferenceError(f"{url} answered {response.status_code} without JSON") from exc
        if response.status_code != 200:
            fallback = ServingUnavailable if response.status_code >= 500 else InferenceError
            error = _STATUS.get(response.status_code, fallback)
            raise error(f"HTTP {response.status_code} from {url}: {payload.get('error', payload)}")
        return payload

    def predict(self, model: str, windows: np.ndarray, version: int | None = None) -> np.ndarray:
        """Scores of raw windows (rows) from `model` at `version` (the latest when None)."""
        batch = np.atleast_2d(np.asarray(windows, dtype=np.float32))
        path = f"/v1/models/{model}" + (f"/versions/{int(version)}" if version is not None else "") + ":predict"
        payload = self._request("POST", path, {"signature_name": SIGNATURE, "instances": batch.tolist()})
        if "predictions" not in payload:
            raise InferenceError(f"{model} answered without predictions: {sorted(payload)}")
        return np.asarray(payload["predictions"], dtype=np.float64).reshape(len(batch))

    def status(self, model: str) -> dict[int, str]:
        """The state of each version of `model` (``GET /v1/models/NAME``)."""
        payload = self._request("GET", f"/v1/models/{model}")
        return {int(s["version"]): s["state"] for s in payload.get("model_version_status", [])}

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
            self._session = None

"""`build_panel`: the detectors of a web worker, their thresholds and their backend.

The physical rule always votes. The learned detectors and the context detector come from the
model manifest (live version, calibrated threshold, window size); when the manifest cannot be
read they abstain, saying why, and the panel keeps judging with what is left. The seasonal
detector sits on the panel only when the manifest has an entry for it (`manifest.OPTIONAL`). ``THRESHOLD`` overrides the
threshold of the detector named by ``MODEL_NAME``. Called once per worker, after fork.
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from webapp.config import Settings
from webapp.detection.base import Window
from webapp.detection.context import ContextDetector
from webapp.detection.drift import DriftFollower
from webapp.detection.hold import hold_level
from webapp.detection.iforest import IsolationForestDetector
from webapp.detection.manifest import CALIBRATED
from webapp.detection.manifest import OPTIONAL
from webapp.detection.manifest import ManifestError
from webapp.detection.manifest import load_manifest
from webapp.detection.manifest import resolve_models_dir
from webapp.detection.neural import AutoencoderDetector
from webapp.detection.neural import LSTMDetector
from webapp.detection.peaks import RecentPeaks
from webapp.detection.physical import THRESHOLD as PHYSICAL_THRESHOLD
from webapp.detection.physical import PhysicalRule
from webapp.detection.seasonal import SeasonalDetector
from webapp.detection.vote import Abstainer
from webapp.detection.vote import Decision
from webapp.detection.vote import Panel
from webapp.detection.vote import Voter

log = logging.getLogger(__name__)


class ConcurrentPanel(Panel):
    """A panel that asks its remote detectors at the same time, so their round trips overlap.

    The thread pool is created on first use in each process (never inherited across the
    gunicorn fork); local detectors score on the calling thread meanwhile.
    """

    def __init__(self, voters, required: int, remote: frozenset[str], follower: DriftFollower | None = None):
        super().__init__(voters, required, follower)
        self.remote = remote
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.remote)), thread_name_prefix="panel")
                self._pid = os.getpid()
            return self._pool

    def judge(self, window: Window, level: float | None = None, peaks: RecentPeaks | None = None) -> Decision:
        pool = self._executor()
        questions = self._questions(window, level, peaks)
        pending = {i: pool.submit(voter.ballot, *question)
                   for i, (voter, question) in enumerate(questions) if voter.name in self.remote}
        ballots = [pending[i].result() if i in pending else voter.ballot(*question)
                   for i, (voter, question) in enumerate(questions)]
        return self._decide(ballots, level, window, peaks)

SERVED = {"autoencoder": AutoencoderDetector, "lstm": LSTMDetector}


def build_panel(settings: Settings, backend=None) -> Panel:
    """The detectors every window is judged by, and the quorum they need (``VOTE_REQUIRED``).

    Parameters
    ----------
    settings
        Names the manifest folder, the inference backend and the overrides.
    backend
        The inference backend of the served models; by default `make_backend` with the manifest's folder.
    """
    voters = [Voter(PhysicalRule(settings.detection.limits_for), PHYSICAL_THRESHOLD)]
    try:
        entries = load_manifest(settings.inference.models_dir)
    except ManifestError as exc:
        log.warning("learned detectors abstain: %s", exc)
        return Panel(voters + [Abstainer(name, str(exc)) for name in CALIBRATED], settings.detection.vote_required)
    if backend is None:
        from webapp.inference import make_backend

        backend = make_backend(settings, resolve_models_dir(settings.inference.models_dir))
    centers = [e.profile.center for e in entries.values()]
    detection = settings.detection
    follower = DriftFollower(centers[0], detection.drift_tau, detection.window_size) if centers else None
    for name in (*CALIBRATED, *OPTIONAL):
        entry = entries.get(name)
        if entry is None and name in OPTIONAL:
            continue
        if entry is None:
            voters.append(Abstainer(name, "not in the model manifest"))
            continue
        if entry.window_size > settings.detection.window_size and entry.params is None:
            log.warning("%s needs %d readings but WINDOW_SIZE is %d: it will abstain",
                        name, entry.window_size, settings.detection.window_size)
        overridden = settings.detection.threshold is not None and name == settings.detection.model_name
        threshold = settings.detection.threshold if overridden else entry.threshold
        try:
            detector = _detector(settings, entry, backend)
        except OSError as exc:
            log.warning("%s abstains: %s", name, exc)
            voters.append(Abstainer(name, f"artefact unreadable: {exc}"))
            continue
        voters.append(Voter(detector, threshold, hold_level(name, threshold, entry.median)))
    if getattr(backend, "kind", "inprocess") == "inprocess":
        return Panel(voters, settings.detection.vote_required, follower)
    return ConcurrentPanel(voters, settings.detection.vote_required, frozenset(SERVED), follower)


RULES = {"context": ContextDetector, "seasonal": SeasonalDetector}  # model-free: parameters in the manifest


def _detector(settings: Settings, entry, backend):
    if entry.name in RULES:
        detector = RULES[entry.name](**entry.params)
        detector.profile_, detector.version_ = entry.profile, str(entry.version)
        return detector
    if entry.name == "isolation_forest":
        path = resolve_models_dir(settings.inference.models_dir) / entry.artefact
        return IsolationForestDetector.load(path, version=str(entry.version))
    return SERVED[entry.name](window_size=entry.window_size, backend=backend, model_version=entry.version)

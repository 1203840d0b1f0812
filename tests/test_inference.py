"""Inference clients against the TF Serving stand-in (official servicers, real routes), the
in-process backend, retry and circuit breaker, and a TensorFlow-free web worker.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from google.protobuf import text_format

from harness.process import free_port
from harness.tfserving_standin import Registry
from harness.tfserving_standin import StandIn
from webapp.config import Settings
from webapp.detection import build_panel
from webapp.detection.base import Window
from webapp.detection.manifest import load_manifest
from webapp.detection.panel import ConcurrentPanel
from webapp.inference import errors
from webapp.inference import make_backend
from webapp.inference.grpc_client import GrpcBackend
from webapp.inference.grpc_client import predict_request
from webapp.inference.inprocess import InProcessBackend
from webapp.inference.resilience import CircuitBreaker
from webapp.inference.resilience import Resilient
from webapp.inference.rest_client import RestBackend
from webapp.inference.signature import SERVED_MODELS

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "serving" / "models"
WINDOWS = 20 + np.random.default_rng(0).normal(0, 0.3, (4, 10))
STAMPS = tuple(range(0, 10_000, 1000))


@pytest.fixture(scope="module")
def registry():
    return Registry(MODELS / "models.config", MODELS)


@pytest.fixture(scope="module")
def standin(registry):
    server = StandIn(registry).start()
    yield server
    server.stop()


def client(kind: str, server: StandIn, timeout_s: float = 5.0):
    if kind == "grpc":
        return GrpcBackend(f"127.0.0.1:{server.grpc_port}", timeout_s)
    return RestBackend(f"http://127.0.0.1:{server.rest_port}", timeout_s)


def test_models_config_parses_with_tf_servings_own_proto():
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((MODELS / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    models = {c.name: c for c in config.model_config_list.config}
    assert set(models) == set(SERVED_MODELS)
    for name, model in models.items():
        assert model.base_path == f"/models/{name}" and model.model_platform == "tensorflow"
        assert model.model_version_policy.latest.num_versions == 2
        assert (MODELS / name / str(load_manifest(MODELS)[name].version) / "saved_model.pb").is_file()


def test_our_predict_request_is_byte_identical_to_tensorflow_serving_apis():
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    reference = predict_pb2.PredictRequest()
    reference.model_spec.name = "lstm"
    reference.model_spec.signature_name = "serving_default"
    reference.model_spec.version.value = 3
    reference.inputs["window"].CopyFrom(tf.make_tensor_proto(WINDOWS.astype(np.float32)))
    ours = predict_request("lstm", WINDOWS, 3)
    assert ours.SerializeToString(deterministic=True) == reference.SerializeToString(deterministic=True)


@pytest.mark.parametrize("kind", ["grpc", "rest"])
@pytest.mark.parametrize("model", ["autoencoder", "lstm"])
def test_clients_score_like_the_in_process_backend(standin, kind, model):
    version = load_manifest(MODELS)[model].version
    expected = InProcessBackend(MODELS).predict(model, WINDOWS, version)
    remote = client(kind, standin)
    np.testing.assert_allclose(remote.predict(model, WINDOWS, version), expected, rtol=1e-6)
    np.testing.assert_allclose(remote.predict(model, WINDOWS), expected, rtol=1e-6)
    status = remote.status(model)
    assert status[version] == "AVAILABLE" and set(status.values()) == {"AVAILABLE"}


@pytest.mark.parametrize("kind", ["grpc", "rest"])
def test_unknown_model_and_version_are_not_found(standin, kind):
    remote = client(kind, standin)
    with pytest.raises(errors.ModelNotFound, match="Servable not found"):
        remote.predict("no_such_model", WINDOWS)
    with pytest.raises(errors.ModelNotFound, match="Specific"):
        remote.predict("lstm", WINDOWS, 999)


@pytest.mark.parametrize("kind", ["grpc", "rest"])
def test_bad_input_is_rejected(standin, kind):
    with pytest.raises(errors.InputRejected):
        client(kind, standin).predict("autoencoder", WINDOWS[:, :4])


@pytest.mark.parametrize("kind", ["grpc", "rest"])
def test_timeout(registry, kind):
    slow = StandIn(registry, delay_s=0.5).start()
    try:
        with pytest.raises(errors.ServingTimeout):
            client(kind, slow, timeout_s=0.05).predict("lstm", WINDOWS)
    finally:
        slow.stop()


@pytest.mark.parametrize("kind", ["grpc", "rest"])
def test_server_down(registry, kind):
    server = StandIn(registry).start()
    remote = client(kind, server)
    remote.predict("lstm", WINDOWS)
    server.stop()
    with pytest.raises(errors.ServingUnavailable):
        remote.predict("lstm", WINDOWS)


def test_rest_routes_bodies_and_status_codes(standin):
    base = f"http://127.0.0.1:{standin.rest_port}/v1/models"
    status = requests.get(f"{base}/lstm", timeout=5)
    assert status.status_code == 200
    assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"
    meta = requests.get(f"{base}/lstm/metadata", timeout=5).json()
    assert "window" in meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    columnar = requests.post(f"{base}/lstm:predict", json={"inputs": {"window": WINDOWS.tolist()}}, timeout=5)
    assert columnar.status_code == 200 and len(columnar.json()["outputs"]) == len(WINDOWS)
    broken = requests.post(f"{base}/lstm:predict", data=b"{not json", timeout=5)
    assert broken.status_code == 400 and "error" in broken.json()
    missing = requests.post(f"{base}/lstm:predict", json={"rows": []}, timeout=5)
    assert missing.status_code == 400 and "error" in missing.json()
    assert requests.get(f"{base}/nope", timeout=5).status_code == 404


def test_retry_once_then_the_circuit_opens():
    now = [0.0]
    dead = GrpcBackend(f"127.0.0.1:{free_port()}", 0.5)
    backend = Resilient(dead, CircuitBreaker(failures=4, reset_s=30.0, clock=lambda: now[0]))
    for _ in range(2):  # two calls, each tried twice
        with pytest.raises(errors.ServingUnavailable):
            backend.predict("lstm", WINDOWS)
    assert backend.health() == {"backend": "grpc", "circuit": "open"}
    with pytest.raises(errors.CircuitOpen):
        backend.predict("lstm", WINDOWS)
    now[0] = 31.0
    with pytest.raises(errors.ServingUnavailable):  # the half-open trial fails: open again
        backend.predict("lstm", WINDOWS)
    assert backend.breaker.state == "open"


def test_circuit_closes_when_the_server_is_back(registry):
    now = [0.0]
    port = free_port()
    backend = Resilient(GrpcBackend(f"127.0.0.1:{port}", 0.5),
                        CircuitBreaker(failures=2, reset_s=5.0, clock=lambda: now[0]))
    with pytest.raises(errors.ServingUnavailable):
        backend.predict("lstm", WINDOWS)
    server = StandIn(registry, grpc_port=port).start()
    try:
        now[0] = 6.0
        assert backend.predict("lstm", WINDOWS).shape == (len(WINDOWS),)
        assert backend.breaker.state == "closed"
    finally:
        server.stop()


def test_served_detectors_abstain_when_the_server_is_down():
    settings = Settings().replace(serving_host="127.0.0.1", serving_grpc_port=free_port(), inference_timeout_s=0.2)
    panel = build_panel(settings)
    decision = panel.judge(Window(tuple(WINDOWS[0]), STAMPS))  # ten readings: the context detector waits for 33
    assert decision.degraded == ("autoencoder", "lstm", "context")
    assert {b.detector: b.vote is not None for b in decision.ballots} == {
        "physical": True, "isolation_forest": True, "autoencoder": False, "lstm": False, "context": False}
    assert "needs 33 readings" in decision.as_dict()["votes"]["context"]["reason"]
    assert "UNAVAILABLE" in decision.as_dict()["votes"]["lstm"]["reason"]


@pytest.mark.parametrize("kind", ["grpc", "rest"])
def test_panel_over_the_standin_matches_in_process(standin, kind):
    port = standin.grpc_port if kind == "grpc" else standin.rest_port
    remote = build_panel(Settings().replace(serving_host="127.0.0.1", inference_backend=kind,
                                            serving_grpc_port=port, serving_rest_port=port))
    local = build_panel(Settings().replace(inference_backend="inprocess"))
    assert isinstance(remote, ConcurrentPanel) and not isinstance(local, ConcurrentPanel)
    window = Window(tuple(WINDOWS[1]), STAMPS)
    a, b = remote.judge(window).as_dict(), local.judge(window).as_dict()
    assert a["verdict"] == b["verdict"] and a["model_versions"] == b["model_versions"]
    for name in a["votes"]:
        if b["votes"][name]["score"] is None:  # the context detector waits for 33 readings, in both
            assert a["votes"][name] == b["votes"][name]
            continue
        assert a["votes"][name]["score"] == pytest.approx(b["votes"][name]["score"], rel=1e-6)


def test_backend_choice_follows_settings():
    assert make_backend(Settings(), "serving/models").kind == "inprocess"
    assert make_backend(Settings().replace(serving_host="tfserving"), "serving/models").kind == "grpc"
    rest = Settings().replace(serving_host="tfserving", inference_backend="rest")
    assert make_backend(rest, "serving/models").kind == "rest"
    with pytest.raises(ValueError, match="inference_backend"):
        Settings().replace(inference_backend="carrier-pigeon")


def test_web_worker_with_a_remote_backend_never_imports_tensorflow(standin):
    """A process that builds the panel and judges over gRPC stays free of TensorFlow."""
    code = textwrap.dedent(f"""
        import json, sys
        from webapp.config import Settings
        from webapp.detection import build_panel
        from webapp.detection.base import Window
        panel = build_panel(Settings().replace(serving_host="127.0.0.1", serving_grpc_port={standin.grpc_port}))
        decision = panel.judge(Window(tuple(float(20 + i / 100) for i in range(40)), tuple(range(0, 40000, 1000))))
        print(json.dumps({{"degraded": list(decision.degraded), "tf": "tensorflow" in sys.modules,
                          "rss_mib": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["tf"] is False and report["degraded"] == []
    assert report["rss_mib"] < 150


def test_inference_settings_come_from_the_environment():
    settings = Settings.from_env({"SERVING_HOST": "tfs", "INFERENCE_BACKEND": "rest", "SERVING_REST_PORT": "9501",
                                  "SERVING_GRPC_PORT": "9500", "INFERENCE_TIMEOUT_S": "0.1",
                                  "BREAKER_FAILURES": "3", "BREAKER_RESET_S": "2", "MODELS_DIR": "/m"})
    inference = settings.inference
    assert (inference.serving_host, inference.inference_backend, inference.serving_rest_port) == ("tfs", "rest", 9501)
    assert (inference.serving_grpc_port, inference.inference_timeout_s) == (9500, 0.1)
    assert (inference.breaker_failures, inference.breaker_reset_s, inference.models_dir) == (3, 2.0, "/m")


def test_concurrent_judges_against_a_dead_server_only_abstain():
    """Threads sharing one client while its channel fails: abstentions, never an exception."""
    panel = build_panel(Settings().replace(serving_host="127.0.0.1", serving_grpc_port=free_port(),
                                           inference_timeout_s=0.2, breaker_failures=1000))
    window = Window(tuple(WINDOWS[2]), STAMPS)
    with ThreadPoolExecutor(max_workers=4) as pool:
        decisions = list(pool.map(lambda _: panel.judge(window), range(40)))
    assert all(d.degraded == ("autoencoder", "lstm", "context") for d in decisions)  # context: ten readings


def served_versions() -> list[tuple[str, Path]]:
    return [(name, version) for name in SERVED_MODELS
            for version in sorted((MODELS / name).iterdir()) if version.is_dir()]


@pytest.mark.parametrize("name, version", served_versions(), ids=lambda v: str(v)[-14:] if isinstance(v, Path) else v)
def test_every_served_version_has_warmup_requests_tf_serving_can_answer(registry, name, version):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from offline.export import WARMUP_FILE

    window = load_manifest(MODELS)[name].window_size
    records = list(tf.data.TFRecordDataset(str(version / WARMUP_FILE)).as_numpy_iterator())
    assert records, "warm-up file is empty"
    for record in records:
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        assert request.model_spec.name == name
        assert request.model_spec.signature_name == "serving_default"
        batch = tf.make_ndarray(request.inputs["window"])
        assert batch.shape == (1, window) and batch.dtype == np.float32
        _, outputs = registry.predict(name, int(version.name), "serving_default", {"window": batch})
        assert np.isfinite(outputs["output_0"]).all()

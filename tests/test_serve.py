"""``dlfm serve``: a real server on a free loopback port, spoken to over HTTP with httpx.

A tiny ``dlf`` model on generated ratings (raw ids that are not indices: users 1000.., items
7, 10, 13..) is served by uvicorn in a thread; every answer is compared with the library's
(and the CLI's) answer for the same model, and a battery of malformed requests must each get a
4xx JSON error while the server keeps serving.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import uvicorn  # noqa: E402

from dlfm.cli.main import main  # noqa: E402
from dlfm.data.ratings import Ratings  # noqa: E402
from dlfm.datasets import synthetic  # noqa: E402
from dlfm.errors import ConfigError  # noqa: E402
from dlfm.models import Recommender, create  # noqa: E402
from dlfm.serving.app import create_app  # noqa: E402
from dlfm.serving.queries import predict_record  # noqa: E402
from dlfm.serving.service import MAX_K, ModelService  # noqa: E402

from .conftest import ml100k_dir  # noqa: E402

HOST = "127.0.0.1"
BODY_LIMIT = 64 * 1024
FAST = dict(hidden=16, latent=4, decoder_hidden=8, max_epochs=3, batch_size=256, ema_decay=0.0, lr=3e-3,
            mc_samples=4, seed=0, verbose=False, device="cpu")


class ThreadServer:
    """uvicorn serving ``app`` in a thread, on a socket bound to a free port of 127.0.0.1."""

    def __init__(self, app):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.url = f"http://{HOST}:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="session")
def ratings() -> Ratings:
    data = synthetic(80, 50, 1500, seed=3)
    users = np.asarray(data.raw_users()) + 1000
    items = np.asarray(data.raw_items()) * 3 + 7
    return Ratings.from_raw(users, items, np.clip(np.round(data.ratings), 1, 5), scale=(1.0, 5.0), name="tiny-serve")


@pytest.fixture(scope="session")
def model_path(ratings, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serve") / "dlf.dlfm"
    create("dlf", **FAST).fit(ratings).save(path)
    return path


@pytest.fixture(scope="session")
def model(model_path) -> Recommender:
    """The served model, loaded from its file as ``dlfm serve`` and the CLI load it."""
    return Recommender.load(model_path)


@pytest.fixture(scope="session")
def server(model_path):
    # its own copy of the model; a small cache (16 users, depth 5) so eviction and k > depth run
    service = ModelService(Recommender.load(model_path), cache_users=16, cache_depth=5)
    with ThreadServer(create_app(service, max_body_bytes=BODY_LIMIT)) as running:
        yield running


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30.0, trust_env=False) as c:
        yield c


def cli_json(argv: list[str], tmp_path: Path, capsys) -> object:
    """Run the ``dlfm`` CLI in this process with ``--json FILE`` and read FILE back."""
    out = tmp_path / f"cli-{len(list(tmp_path.iterdir()))}.json"
    assert main([*argv, "--json", str(out)]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())


def items_of(model: Recommender, n: int = 3) -> list:
    return model.item_vocab_.raw(np.flatnonzero(model.train_.item_counts > 0)[:n])


# ---------------------------------------------------------------------------- the endpoints
def test_health_model_card_and_docs(client, model):
    assert client.get("/health").json() == {"status": "ok"}
    card = client.get("/model").json()
    assert card["model"] == "dlf" and card["dataset"] == "tiny-serve"
    assert card["params"] == json.loads(json.dumps(model.get_params()))
    assert (card["n_users"], card["n_items"], card["scale"]) == (80, 50, [1.0, 5.0])
    assert card["supports_new_users"] and card["predictive_distribution"]
    assert "val_rmse" in card["metrics"] and card["versions"]["serving"]["fastapi"]
    assert card["versions"]["trained_with"]["torch"]
    spec = client.get("/openapi.json").json()
    assert {"get", "post"} <= set(spec["paths"]["/recommend"]) and {"get", "post"} <= set(spec["paths"]["/predict"])
    params = {p["name"] for p in spec["paths"]["/recommend"]["get"]["parameters"]}
    assert params == {"user", "k", "exclude_seen", "fallback"}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_get_recommend_equals_the_library(client, model, exclude_seen):
    users = model.user_vocab_.raw(range(0, 80, 13))
    for repeat in range(2):  # the second time from the cache (depth 5), except k > 5
        for user in users:
            for k in (1, 5, 8, 60):
                body = client.get("/recommend", params={"user": str(user), "k": k, "exclude_seen": exclude_seen}).json()
                expected = model.recommend(user, k, exclude_seen=exclude_seen)
                assert [(r["item"], r["score"]) for r in body["items"]] == expected, (user, k, repeat)
                assert body["user"] == str(user) and body["k"] == k and body["known"] is True


def test_get_recommend_equals_the_cli(client, model_path, model, tmp_path, capsys):
    user = str(model.user_vocab_.raw([3])[0])
    cli = cli_json(["recommend", str(model_path), "--user", user, "-k", "7"], tmp_path, capsys)
    body = client.get("/recommend", params={"user": user, "k": 7}).json()
    assert [(r["item"], r["score"]) for r in body["items"]] == [(r["item"], r["score"]) for r in cli]


def test_post_recommend_equals_recommend_new_user_and_the_cli(client, model_path, model, tmp_path, capsys):
    a, b, c = items_of(model)
    body = client.post("/recommend", json={"ratings": {str(a): 5, str(b): 5, str(c): 4}, "k": 10}).json()
    expected = model.recommend_new_user({str(a): 5.0, str(b): 5.0, str(c): 4.0}, 10)
    assert [(r["item"], r["score"]) for r in body["items"]] == expected
    assert len(body["items"]) == 10 and not {a, b, c} & {r["item"] for r in body["items"]}
    cli = cli_json(["recommend", str(model_path), "--ratings", f"{a}:5,{b}:5,{c}:4", "-k", "10"], tmp_path, capsys)
    assert [(r["item"], r["score"]) for r in body["items"]] == [(r["item"], r["score"]) for r in cli]
    assert body["user"] is None and body["ignored"] == [] and body["known"] is True


def test_get_predict_equals_the_cli(client, model_path, model, tmp_path, capsys):
    user, item = str(model.user_vocab_.raw([5])[0]), str(items_of(model, 5)[4])
    for samples in (0, 50):
        cli = cli_json(["predict", str(model_path), "--user", user, "--item", item, "--samples", str(samples)],
                       tmp_path, capsys)
        body = client.get("/predict", params={"user": user, "item": item, "samples": samples}).json()
        assert [body] == cli  # the CLI writes a list of records, one per pair
    assert set(body) == {"user", "item", "known", "prediction", "std", "q05", "q95"}
    assert body["q05"] <= body["prediction"] <= body["q95"] and body["std"] > 0


def test_post_predict_equals_the_library(client, model):
    rng = np.random.default_rng(0)
    users = [int(u) for u in rng.choice(model.user_vocab_.ids, 30)]
    items = [int(i) for i in rng.choice(model.item_vocab_.ids, 30)]
    pairs = [[u, str(i)] if n % 2 else [str(u), i] for n, (u, i) in enumerate(zip(users, items))]  # ids either way
    got = client.post("/predict", json={"pairs": pairs}).json()["predictions"]
    batched = model.predict([p[0] for p in pairs], [p[1] for p in pairs])
    assert [r["prediction"] for r in got] == batched.tolist()
    assert [[r["user"], r["item"]] for r in got] == pairs and all(r["known"] for r in got)
    single = [predict_record(model, u, i)["prediction"] for u, i in pairs]
    np.testing.assert_allclose([r["prediction"] for r in got], single, rtol=0, atol=1e-6)
    # with samples: each pair exactly as `dlfm predict --samples`, whatever else is in the request
    with_samples = client.post("/predict", json={"pairs": pairs[:6], "samples": 40}).json()["predictions"]
    assert with_samples == [predict_record(model, u, i, 40) for u, i in pairs[:6]]
    alone = client.post("/predict", json={"pairs": pairs[3:4], "samples": 40}).json()["predictions"]
    assert alone == with_samples[3:4]


def test_unknown_ids_are_404_or_the_documented_fallback(client, model):
    item = items_of(model, 1)[0]
    for response in (client.get("/recommend", params={"user": "ghost"}),
                     client.get("/predict", params={"user": "ghost", "item": item}),
                     client.get("/predict", params={"user": 1000, "item": "999999"}),
                     client.post("/predict", json={"pairs": [[1000, item], ["ghost", item]]}),
                     client.post("/recommend", json={"ratings": {"999999": 4}})):
        assert response.status_code == 404 and "unknown" in response.json()["error"], response.text
    fallback = client.get("/recommend", params={"user": "ghost", "k": 5, "fallback": True}).json()
    scores = model.predict(["ghost"] * 50, model.item_vocab_.raw(range(50)))
    order = np.lexsort((np.arange(50), -scores))[:5]
    assert fallback["known"] is False and [r["item"] for r in fallback["items"]] == model.item_vocab_.raw(order)
    one = client.get("/predict", params={"user": "ghost", "item": item, "fallback": "true"}).json()
    assert one["known"] is False and one["prediction"] == model.predict("ghost", item)
    mixed = client.post("/recommend", json={"ratings": {"999999": 4, str(item): 5}, "k": 4, "fallback": True}).json()
    assert mixed["ignored"] == ["999999"]
    assert [(r["item"], r["score"]) for r in mixed["items"]] == model.recommend_new_user({str(item): 5.0}, 4)
    none_known = client.post("/recommend", json={"ratings": {"999999": 4}, "k": 3, "fallback": True}).json()
    assert none_known["known"] is False and len(none_known["items"]) == 3


def test_concurrent_requests_give_the_sequential_answers(client, model):
    users = [str(u) for u in model.user_vocab_.raw(range(40))]
    item = items_of(model, 1)[0]
    jobs = [("GET", "/recommend", {"params": {"user": u, "k": 6}}) for u in users]
    jobs += [("GET", "/predict", {"params": {"user": u, "item": item, "samples": 30}}) for u in users[:20]]
    jobs += [("POST", "/recommend", {"json": {"ratings": {str(item): r}, "k": 3}}) for r in (1, 2, 3, 4, 5) * 4]
    expected = [client.request(m, p, **kw).json() for m, p, kw in jobs]

    def fetch(job):
        method, path, kwargs = job
        return client.request(method, path, **kwargs).json()  # httpx clients are thread-safe

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert list(pool.map(fetch, jobs)) == expected


# ---------------------------------------------------------------------------- bad requests
def malformed_requests(model: Recommender) -> list[tuple[str, str, dict, int]]:
    """(method, path, httpx keyword arguments, expected status) of requests a client can get
    wrong: malformed JSON, wrong types, missing and unknown fields, k ≤ 0 or huge, samples out
    of range, ratings off the scale, unknown ids, oversized bodies, wrong methods and paths."""
    user, item = int(model.user_vocab_.raw([0])[0]), int(items_of(model, 1)[0])
    bad: list[tuple[str, str, dict, int]] = []
    json_headers = {"content-type": "application/json"}
    for path in ("/recommend", "/predict"):
        for text in ('{"ratings": {"7": 5', "{'ratings': {}}", "{", "}", "[", "", "nul", "{\"k\": 1,}", "{} {}",
                     '{"ratings": {"7": 5}} trailing', "\x00", "\ufeff{}", "{\"a\":\"\\ud800\"", "1e999999",
                     "[" * 20000 + "]" * 20000, '{"pairs": [[1, 2]', "true", "null", "42", '"text"', "[]"):
            bad.append(("POST", path, {"content": text.encode("utf-8", "surrogatepass"), "headers": json_headers}, 422))
        for raw in (b"\xff\xfe\x00", b"\x80abc", bytes(range(256))):
            bad.append(("POST", path, {"content": raw, "headers": json_headers}, 422))
        bad.append(("POST", path, {"content": b"ratings=1", "headers": {"content-type": "text/plain"}}, 422))
        bad.append(("POST", path, {"json": {}}, 422))  # the required field missing
        bad.append(("POST", path, {"json": {"ratings": {"7": 5}, "pairs": [[1, 2]], "extra": 1}}, 422))
        bad.append(("POST", path, {"content": b"{" + b" " * (BODY_LIMIT + 1) + b"}", "headers": json_headers}, 413))
        bad.append(("POST", path, {"content": (b"[" * 1024 for _ in range(BODY_LIMIT // 1024 + 2)),
                                   "headers": json_headers}, 413))  # chunked, no Content-Length
        for method in ("PUT", "DELETE", "PATCH"):
            bad.append((method, path, {}, 405))
    for path in ("/", "/recommendations", "/predict/1", "/health/x"):
        bad.append(("GET", path, {}, 404))
    # POST /recommend: wrong types, bounds, the scale
    for ratings in ([], "5", 5, None, True, {}, [["7", 5]], {"": 5}, {"x" * 300: 5}):
        bad.append(("POST", "/recommend", {"json": {"ratings": ratings}}, 422))
    for value in ("5", None, True, False, [5], {"v": 5}, 0, 0.99, 5.01, 6, -1, 1e308, -1e308, 10 ** 400, "NaN"):
        bad.append(("POST", "/recommend", {"json": {"ratings": {str(item): value}}}, 422))
        bad.append(("POST", "/recommend", {"json": {"ratings": {str(item): 4, "10": value}, "k": 3}}, 422))
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        bad.append(("POST", "/recommend", {"content": f'{{"ratings": {{"{item}": {literal}}}}}'.encode(),
                                           "headers": json_headers}, 422))
    for k in (0, -1, -10 ** 9, MAX_K + 1, 10 ** 9, 10 ** 30, "10", 2.5, True, None, [10], {"k": 1}):
        bad.append(("POST", "/recommend", {"json": {"ratings": {str(item): 4}, "k": k}}, 422))
    for fallback in ("yes", 1, None, "true"):
        bad.append(("POST", "/recommend", {"json": {"ratings": {str(item): 4}, "fallback": fallback}}, 422))
    for ghost in ("999999", "ghost", "-1", "7.0x"):
        bad.append(("POST", "/recommend", {"json": {"ratings": {ghost: 4}}}, 404))
    # POST /predict
    for pairs in ([], "x", 5, None, {"a": 1}, [1, 2], [[user]], [[user, item, 3]], [[]], [[user, None]],
                  [[user, 1.5]], [[True, item]], [[user, [item]]], [[{"u": 1}, item]], [["", item]],
                  [["u" * 300, item]], [[user, item]] * 1001):
        bad.append(("POST", "/predict", {"json": {"pairs": pairs}}, 422))
    for samples in (1, -1, -100, 10_001, 10 ** 12, "10", 2.5, True, None, [2]):
        bad.append(("POST", "/predict", {"json": {"pairs": [[user, item]], "samples": samples}}, 422))
    bad.append(("POST", "/predict", {"json": {"pairs": [[user, item]] * 1000, "samples": 10_000}}, 422))
    for fallback in ("yes", 1, None, "true", [True]):
        bad.append(("POST", "/predict", {"json": {"pairs": [[user, item]], "fallback": fallback}}, 422))
    for pair in ([user, 999999], [999999, item], ["ghost", "ghost"], [user, "-7"]):
        bad.append(("POST", "/predict", {"json": {"pairs": [[user, item], pair]}}, 404))
    # GET /recommend and GET /predict: query parameters
    for params in ({}, {"k": 5}, {"user": ""}, {"user": "u" * 300}, {"user": user, "k": "abc"}, {"user": user, "k": "1.5"},
                   {"user": user, "k": 0}, {"user": user, "k": -3}, {"user": user, "k": MAX_K + 1},
                   {"user": user, "k": "9" * 40}, {"user": user, "exclude_seen": "maybe"},
                   {"user": user, "fallback": "2"}, {"user": user, "k": ""}, {"user": user, "k": "-1000000000"},
                   {"user": user, "k": "1e3"}, {"user": user, "k": "true"}, {"user": user, "k": "[10]"},
                   {"user": user, "k": "0x10"}):
        bad.append(("GET", "/recommend", {"params": params}, 422))
    for ghost in ("999999", "ghost", "-1", " ", "1000.5", "\x00"):
        bad.append(("GET", "/recommend", {"params": {"user": ghost}}, 404))
    for params in ({}, {"user": user}, {"item": item}, {"user": user, "item": ""}, {"user": user, "item": item, "samples": 1},
                   {"user": user, "item": item, "samples": -1}, {"user": user, "item": item, "samples": 10 ** 6},
                   {"user": user, "item": item, "samples": "many"}, {"user": user, "item": item, "fallback": "perhaps"}):
        bad.append(("GET", "/predict", {"params": params}, 422))
    for params in ({"user": "ghost", "item": item}, {"user": user, "item": "ghost"}, {"user": "999999", "item": "999999"}):
        bad.append(("GET", "/predict", {"params": params}, 404))
    return bad


def test_malformed_requests_get_4xx_json_errors_and_the_server_keeps_serving(client, model):
    battery = malformed_requests(model)
    assert len(battery) >= 200
    wrong = []
    for method, path, kwargs, status in battery:
        response = client.request(method, path, **kwargs)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
        if (response.status_code != status or not isinstance(body, dict) or body.get("status") != status
                or not isinstance(body.get("error"), str) or not body["error"] or "Traceback" in response.text):
            wrong.append((method, path, str(kwargs)[:80], status, response.status_code, response.text[:200]))
    assert not wrong, wrong
    assert client.get("/health").json() == {"status": "ok"}
    user = model.user_vocab_.raw([0])[0]
    assert client.get("/recommend", params={"user": user, "k": 3}).status_code == 200


def test_validation_errors_name_the_field(client, model):
    item = items_of(model, 1)[0]
    body = client.post("/recommend", json={"ratings": {str(item): 4}, "k": 0}).json()
    assert body["fields"][0]["field"] == "k" and "k" in body["error"]
    body = client.post("/recommend", json={"ratings": {str(item): 9}}).json()
    assert body["error"].startswith("ratings:") and "from 1 to 5" in body["error"]
    body = client.post("/predict", json={"pairs": [[1000, True]]}).json()
    assert body["fields"][0]["field"] == "pairs.0.1" and "id" in body["fields"][0]["message"]
    body = client.get("/recommend", params={"user": 1000, "k": "x"}).json()
    assert body["fields"] == [{"field": "k", "message": body["fields"][0]["message"]}]
    assert "malformed JSON" in client.post("/predict", content=b"{", headers={"content-type": "application/json"}).json()["error"]


def test_an_unexpected_error_is_a_500_without_traceback(model):
    class Broken(ModelService):
        def predict(self, *args, **kwargs):
            raise RuntimeError("secret internals")

    with ThreadServer(create_app(Broken(model, warm=False))) as running:
        with httpx.Client(base_url=running.url, trust_env=False, timeout=30.0) as c:
            for _ in range(3):  # the same keep-alive connection goes on serving
                response = c.get("/predict", params={"user": 1000, "item": 7})
                assert response.status_code == 500
                assert response.json() == {"error": "internal server error (see the server's log)", "status": 500}
                assert c.get("/health").status_code == 200


# ---------------------------------------------------------------------------- the service
def test_service_cache_changes_no_answer_and_stays_bounded(model):
    cached, plain = ModelService(model, cache_users=3, cache_depth=4), ModelService(model, cache_users=0)
    for user in model.user_vocab_.raw(range(10)) * 2:
        for k in (2, 4, 6):
            assert cached.recommend(user, k) == plain.recommend(user, k) == model.recommend(user, k)
    assert len(cached._cache) == 3 and cached.cache_hits > 0 and plain.cache_hits == 0


def test_service_limits(model):
    service = ModelService(model, warm=False)
    item = items_of(model, 1)[0]
    for call in (lambda: service.recommend(1000, 0), lambda: service.recommend(1000, MAX_K + 1),
                 lambda: service.recommend_new_user({item: 5.5}), lambda: service.recommend_new_user({}),
                 lambda: service.recommend_new_user({n: 3 for n in range(10_001)}),
                 lambda: service.predict([]), lambda: service.predict([(1000, item)], samples=1),
                 lambda: service.predict([(1000, item)] * 200, samples=10_000)):
        with pytest.raises(ConfigError):
            call()
    with pytest.raises(ConfigError, match="not fitted"):
        ModelService(create("dlf"))


# ---------------------------------------------------------------------------- the command
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(url + "/health", timeout=2.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("dlfm serve did not answer /health")


def serve_env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def test_dlfm_serve_command_serves_and_stops_on_ctrl_c(model_path, model):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dlfm", "serve", str(model_path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=serve_env())
    try:
        url = f"http://{HOST}:{port}"
        wait_for(url, proc)
        user = model.user_vocab_.raw([2])[0]
        body = httpx.get(url + "/recommend", params={"user": user, "k": 4}, trust_env=False).json()
        assert [(r["item"], r["score"]) for r in body["items"]] == model.recommend(user, 4)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Traceback" not in err and f"127.0.0.1:{port}" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_dlfm_serve_errors_are_one_line(tmp_path, capsys, model_path):
    assert main(["serve", str(tmp_path / "missing.dlfm"), "--port", str(free_port())]) == 2
    assert "no such model file" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        assert main(["serve", str(model_path), "--port", str(busy.getsockname()[1])]) == 2
        assert "already in use" in capsys.readouterr().err
    for argv in (["--port", "70000"], ["--workers", "0"], ["--cache-users", "-1"], ["--max-body-bytes", "0"]):
        assert main(["serve", str(model_path), *argv]) == 2
        assert capsys.readouterr().err.startswith("dlfm: error: --")


def test_the_cli_does_not_import_the_web_framework():
    code = "import sys, dlfm.cli.main as m; m.build_parser(); print('fastapi' in sys.modules, 'uvicorn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=serve_env(), check=True)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------- MovieLens 100k
@pytest.mark.slow
def test_must_show_on_ml100k(tmp_path):
    root = ml100k_dir()
    if root is None:
        pytest.skip("MovieLens 100k not found: set DLFM_DATA_DIR to a folder holding ml-100k/u.data")
    path = tmp_path / "dlf-ml100k.dlfm"
    env = {**serve_env(), "DLFM_DATA_DIR": str(root)}
    # 5 epochs instead of about 36: what is checked is serving, not accuracy
    subprocess.run([sys.executable, "-m", "dlfm", "train", "ml-100k", "--model", "dlf", "--param", "max_epochs=5",
                    "-o", str(path), "--quiet"], check=True, env=env, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dlfm", "serve", str(path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = f"http://{HOST}:{port}"
        wait_for(url, proc)
        with httpx.Client(base_url=url, timeout=60.0, trust_env=False) as c:
            assert c.get("/health").json() == {"status": "ok"}
            assert c.get("/model").json()["dataset"] == "ml-100k"
            assert len(c.get("/recommend", params={"user": 196, "k": 10}).json()["items"]) == 10
            assert c.get("/predict", params={"user": 196, "item": 242, "samples": 100}).json()["std"] > 0
            assert len(c.post("/predict", json={"pairs": [[196, 242], ["186", "302"]]}).json()["predictions"]) == 2
            body = c.post("/recommend", json={"ratings": {"50": 5, "172": 5, "181": 4}, "k": 10})
        assert body.status_code == 200
        items = body.json()["items"]
        assert len(items) == 10 and not {50, 172, 181} & {r["item"] for r in items}
        cli = subprocess.run([sys.executable, "-m", "dlfm", "recommend", str(path), "--ratings", "50:5,172:5,181:4",
                              "-k", "10", "--json", "-"], check=True, env=env, capture_output=True, text=True).stdout
        doc = json.loads(cli)
        assert [(r["item"], r["score"]) for r in items] == [(r["item"], r["score"]) for r in doc]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()

"""The project's model server (`attnflow model serve`): a registered version of a task's served model
(tasks/serving/pyfunc_model.py) behind bearer-token authentication, with Prometheus metrics, /health and /version.

POST /invocations answers what MLflow's scoring server (`mlflow models serve`) answers, byte for byte: the request is
handed to MLflow's own ``invocations`` (dataframe_records, dataframe_split, inputs, instances, CSV; the ``params``
field; the same HTTP 400 messages), so the two servers cannot drift apart. What this server adds:

- authentication: with a token, every path but /health and /ping needs ``Authorization: Bearer <token>`` (compared in
  constant time) and gets 401 without it. /health stays open so that a load balancer or an orchestrator can probe
  it without the secret; it says only that the model is loaded. /metrics is behind the token like the rest: the
  metrics name the model, its classes and the traffic. Without a token the server listens on loopback only
  (``check_bind``);
- metrics (/metrics, prometheus-client, in the app's own registry): requests and errors by endpoint and status
  code, latency, the labels a classifier answered, rows per request and request bytes per row;
- /version: the registered model's name, version and alias, its run, kind and task;
- ``on_answers``: an observer called with each successful prediction (a request log plugs in there).

The server keeps no state between requests but its metrics (and what an observer keeps), so replicas behind a load
balancer need nothing shared (docs/how-to/deploy.md).
"""

import asyncio
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

TOKEN_ENV = "ATTNFLOW_SERVE_TOKEN"  # the bearer token, unless --token-file names a file holding it
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5001
OPEN_PATHS = frozenset({"/health", "/ping"})  # answered without the token: probes of load balancers, orchestrators
ENDPOINTS = frozenset({*OPEN_PATHS, "/version", "/metrics", "/invocations"})  # other paths count as "other"
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # rows per request; global.serving.max_rows is 64 by default
BYTE_BUCKETS = tuple(2**power for power in range(6, 26, 2))  # 64 B .. 32 MB per row (max_input_mb is 16 by default)

UNAUTHENTICATED = {"error_code": "UNAUTHENTICATED", "message": "missing or wrong token (Authorization: Bearer ...)"}
Observer = Callable[[dict, list, list[dict]], None]
logger = logging.getLogger(__name__)


class ServeError(Exception):
    """A reason the server cannot start (no such model or alias, an unsafe address, an unreadable token): one line."""


def is_loopback(host: str) -> bool:
    """Only this machine can reach host: localhost or a loopback address. A name other than localhost counts as
    reachable from elsewhere (it may resolve to anything)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Beyond loopback, whoever reaches the port could use the model (and read its metrics): a token is required."""
    if token is None and not is_loopback(host):
        raise ServeError(
            f"refusing to listen on {host} without a token: anyone who reaches it could call the model; set "
            f"{TOKEN_ENV} or pass --token-file (or listen on 127.0.0.1)"
        )


def read_token(token_file: str | None, environ: dict) -> str | None:
    """The token from token_file if given, else from $ATTNFLOW_SERVE_TOKEN; None when neither is set. An empty one
    is refused: it would let anyone in who sends an empty bearer token."""
    if token_file is None:
        token, source = environ.get(TOKEN_ENV), TOKEN_ENV
    else:
        try:
            token, source = Path(token_file).read_text(), f"--token-file {token_file}"
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or error
            raise ServeError(f"--token-file {token_file}: cannot read it ({reason})") from None
    if token is None:
        return None
    token = token.strip()  # a file's final newline
    if not token:
        raise ServeError(f"{source}: the token is empty")
    if any(character.isspace() for character in token):
        raise ServeError(f"{source}: the token holds white space (an HTTP header cannot carry it)")
    return token


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before the model loads: a port in use fails at once, in one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as error:  # OverflowError: a port outside 0-65535
        sock.close()
        reason = getattr(error, "strerror", None) or error
        raise ServeError(f"--host {host} --port {port}: cannot listen there ({reason})") from None
    return sock


def load_registered(tracking_uri: str, name: str, alias: str):
    """(the pyfunc model, its model_info) for the version of registered model name that holds alias.

    The alias is resolved to its version first and that version is loaded (``models:/<name>/<version>``), so
    /version names the model that is served even if the alias moves meanwhile (a promotion while it loads)."""
    import mlflow.pyfunc
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        raise ServeError(f"no registered model {name!r} in the MLflow store (has this task's pipeline run?)") from None
    if alias not in registered.aliases:
        aliases = ", ".join(f"{a} (v{v})" for a, v in sorted(registered.aliases.items())) or "none"
        raise ServeError(f"model {name} has no version with the alias {alias!r}; its aliases: {aliases}")
    version = client.get_model_version_by_alias(name, alias)
    tags = client.get_run(version.run_id).data.tags
    mlflow.set_registry_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    info = {
        "name": name,
        "version": version.version,
        "alias": alias,
        "run_id": version.run_id,
        "kind": tags.get("kind"),
        "task": tags.get("task"),
    }
    return model, info


class ServingMetrics:
    """The server's Prometheus metrics, in a registry of their own (never prometheus-client's global one: two apps
    in one process, as in the tests, would collide on it). Sizes are histograms rather than summaries: the Python
    client's summaries keep no quantiles, and a histogram's _sum and _count give the mean all the same."""

    def __init__(self, model_info: dict):
        from prometheus_client import CollectorRegistry, Counter, Histogram, Info

        self.registry = CollectorRegistry()
        by_code = ["endpoint", "code"]
        self.requests = Counter("attnflow_serving_requests", "HTTP requests by endpoint and status code", by_code,
                                registry=self.registry)  # fmt: skip
        self.errors = Counter("attnflow_serving_errors", "HTTP requests answered with a status code of 400 or above",
                              by_code, registry=self.registry)  # fmt: skip
        self.latency = Histogram("attnflow_serving_request_seconds", "Time from request to response", ["endpoint"],
                                 registry=self.registry)  # fmt: skip
        self.labels = Counter("attnflow_serving_predicted_labels", "Rows answered with each label (classifiers)",
                              ["label"], registry=self.registry)  # fmt: skip
        self.rows = Histogram("attnflow_serving_request_rows", "Rows per answered request", buckets=ROW_BUCKETS,
                              registry=self.registry)  # fmt: skip
        self.row_bytes = Histogram("attnflow_serving_row_bytes", "Request body bytes per row of answered requests",
                                   buckets=BYTE_BUCKETS, registry=self.registry)  # fmt: skip
        self.observer_errors = Counter("attnflow_serving_observer_errors", "Answers the on_answers observer failed on",
                                       registry=self.registry)  # fmt: skip
        Info("attnflow_serving_model", "The served registered model", registry=self.registry).info(
            {key: str(value) for key, value in model_info.items()}
        )

    def request(self, endpoint: str, code: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(code)).inc()
        if code >= 400:
            self.errors.labels(endpoint, str(code)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def answered(self, body_bytes: int, answers: list[dict]) -> None:
        self.rows.observe(len(answers))
        self.row_bytes.observe(body_bytes / len(answers))
        for answer in answers:
            if "label" in answer:  # a classifier's answer; sequence tasks answer with text and an alignment
                self.labels.labels(str(answer["label"])).inc()

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Recording:
    """The served model as MLflow's ``invocations`` sees it (``metadata``, ``predict``), keeping what one request's
    prediction was given and answered, for the metrics and the observer. One per request: requests run in threads."""

    def __init__(self, model):
        self.model, self.metadata = model, model.metadata
        self.data, self.answers = None, None

    def predict(self, data, params=None):
        answers = self.model.predict(data, params=params)
        self.data, self.answers = data, answers
        return answers


def request_rows(model, data) -> list:
    """The raw input of each row of an answered request, as the served wrapper reads them (pyfunc_model.rows), in
    plain Python types: data is the request as MLflow parsed it (a DataFrame; for ``inputs`` and ``instances`` a dict
    of arrays or a list of records, which MLflow's schema enforcement makes a DataFrame before the model sees it)."""
    import numpy as np
    import pandas as pd

    from tasks.data.requests import limits_from
    from tasks.serving.pyfunc_model import rows

    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        data = pd.DataFrame(data)
    wrapper = model.unwrap_python_model()
    values = rows(data, wrapper.spec.input_column, limits_from(wrapper.config))
    return [value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value for value in values]


def bearer_ok(header: str | None, token: str) -> bool:
    """The Authorization header carries the token as a bearer token (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def create_app(model, model_info: dict, token: str | None = None, on_answers: Observer | None = None):
    """The FastAPI app serving model (a loaded pyfunc model of tasks/serving/pyfunc_model.py).

    model_info: what /version answers and the metrics and the observer are told (``load_registered``'s: name,
    version, alias, run_id, kind, task). token: the bearer token every path but /health and /ping needs; None:
    no authentication (``check_bind`` allows that on loopback only).
    on_answers: called as ``on_answers(model_info, rows, answers)`` after each successful prediction, before the
    response is sent, in the request's worker thread: rows are the request's raw input values, one per row (what
    the model read: a text, a base64 file, an array), answers the model's answers (a dict per row). For a request
    log, which should record summary features, never the raw input. If it raises, the error is logged and counted
    (attnflow_serving_observer_errors_total) and the client still gets its answer.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server
    from mlflow.version import VERSION

    app = FastAPI(title="attnflow model server", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = ServingMetrics(model_info)
    input_schema = model.metadata.get_input_schema()
    timeout = MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()  # as MLflow's scoring server: 504 after it

    @app.middleware("http")
    async def authenticate_and_measure(request: Request, call_next):
        started, path = time.perf_counter(), request.url.path
        if token is not None and path not in OPEN_PATHS and not bearer_ok(request.headers.get("authorization"), token):
            response = JSONResponse(UNAUTHENTICATED, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        else:
            response = await call_next(request)
        metrics.request(path if path in ENDPOINTS else "other", response.status_code, time.perf_counter() - started)
        return response

    async def health():
        return JSONResponse({"status": "ok"})  # the model was loaded before the app was made

    app.get("/health")(health)
    app.get("/ping")(health)  # MLflow's scoring server answers both

    @app.get("/version")
    async def version():
        return JSONResponse({**model_info, "mlflow": VERSION})

    @app.get("/metrics")
    async def exposition():
        body, media_type = metrics.exposition()
        return Response(body, media_type=media_type)

    def predict(body: bytes, content_type: str):
        """MLflow's scoring of one request; on success the metrics and the observer see its rows and answers."""
        recording = Recording(model)
        result = scoring_server.invocations(body, content_type, recording, input_schema)
        if result.status == 200:
            metrics.answered(len(body), recording.answers)
            if on_answers is not None:
                observe(on_answers, model_info, request_rows(model, recording.data), recording.answers, metrics)
        return result

    @app.post("/invocations")
    async def invocations(request: Request):
        body = await request.body()
        content_type = request.headers.get("content-type") or ""  # none: MLflow's 415, naming the types it takes
        try:
            result = await asyncio.wait_for(asyncio.to_thread(predict, body, content_type), timeout=timeout)
        except MlflowException as error:
            return Response(error.serialize_as_json(), error.get_http_status_code(), media_type="application/json")
        except TimeoutError:
            return Response("Request processing time exceeded limit", 504, media_type="application/json")
        return Response(result.response, result.status, media_type=result.mimetype)

    return app


def observe(on_answers: Observer, model_info: dict, rows: list, answers: list[dict], metrics: ServingMetrics) -> None:
    """Hand an answered request to the observer; its failure is not the client's (logged and counted)."""
    try:
        on_answers(model_info, rows, answers)
    except Exception:
        metrics.observer_errors.inc()
        logger.exception("the on_answers observer failed on a request of %d rows", len(rows))


def run_server(app, sock: socket.socket) -> None:
    """Serve app on the bound socket with uvicorn until SIGTERM or Ctrl-C (uvicorn then finishes open requests)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=30))
    server.run(sockets=[sock])

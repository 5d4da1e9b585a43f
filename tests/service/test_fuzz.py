"""A request generator driven by the real server's own OpenAPI document (``/docs.json``).

For every operation the document lists it sends, from a fixed seed: bodies of the right shape, only the
required fields, a required field missing, an unknown field, and one field at a time replaced by a
hostile value (another JSON type, huge or negative numbers, empty, long or garbage strings, deep
nesting); top-level bodies that are not objects or not JSON; the same inputs as a multipart upload;
and, over a bare socket, broken framing and media types (multipart without a boundary, JSON under a
multipart type and the reverse, truncated multipart, bodies shorter than their ``Content-Length``,
chunked bodies without their last chunk, an absurd ``Content-Length``). Every answer must come before
the client gives up, none may be a 5xx, every 4xx must carry a JSON message, and the server must still
be ready and serving at the end. The count is bounded (a few hundred requests) and so is the time
(cases are interleaved across operations, so a cut still covers every operation).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

import pytest
import requests
from raw_http import CLIENT_TIMEOUT, raw_request
from svc_helpers import Server, image_uri, png_bytes

SEED = 18
MAX_ITEMS = 16  # the server's item limit: "too many items" cases stay cheap
BUDGET_S = 240.0  # stop sending new cases after this long (a bound, not a timing claim)
MIN_PER_OPERATION = 8
GOOD_STRINGS = ["default", "fuzz", image_uri(3), "a red circle", "label"]
HOSTILE_VALUES: list[Any] = [
    None, True, 0, -1, -(2**63), 2**64, 10**30, 1e308, -1e308, 0.0, "", " ", "\x00", "\udcff", "😀" * 50,
    "x" * 100_000, "../../etc/passwd", "data:image/png;base64,", "data:image/png;base64,@@@", "%%%", [], [None],
    [""], [[]], [{}], {}, {"a": {"b": [1, "x"]}}, list(range(MAX_ITEMS * 4)), ["x"] * (MAX_ITEMS + 1),
]
DEEP = "[" * 5000 + "]" * 5000


@dataclass
class Outcome:
    """One request and what came back."""

    operation: str
    case: str
    status: int  # 0: no answer before the client's timeout
    message: bool  # a 4xx carried a JSON error message (true when not a 4xx)
    seconds: float


@pytest.fixture(scope="module")
def server(service_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("fuzz_data")
    srv = Server(service_home, data, data / "server.log", SSLZOO_MAX_ITEMS=str(MAX_ITEMS),
                 SSLZOO_MAX_REQUEST_BYTES=str(2 * 1024 * 1024))
    try:
        yield srv.wait()
    finally:
        srv.stop()


# -- values from a schema ---------------------------------------------------------------------------
class Schemas:
    """Valid-shaped and hostile values for the JSON schemas of one OpenAPI document."""

    def __init__(self, spec: dict[str, Any], rng: random.Random) -> None:
        self.spec, self.rng = spec, rng

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The schema itself, behind any ``$ref``, with one ``anyOf``/``oneOf`` branch picked."""
        while "$ref" in schema:
            node: Any = self.spec
            for part in schema["$ref"].lstrip("#/").split("/"):
                node = node[part]
            schema = node
        branches = schema.get("anyOf") or schema.get("oneOf")
        if branches:
            return self.resolve(self.rng.choice([b for b in branches if b.get("type") != "null"] or branches))
        return schema

    def sample(self, schema: dict[str, Any], depth: int = 0) -> Any:
        """A value of the right type (not necessarily one the endpoint accepts)."""
        schema = self.resolve(schema)
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        kind = schema.get("type")
        if kind == "array" and depth < 3:
            return [self.sample(schema.get("items", {}), depth + 1) for _ in range(self.rng.randint(1, 3))]
        if kind == "object" and depth < 3:
            props = schema.get("properties") or {"label": {"type": "string"}}
            return {name: self.sample(sub, depth + 1) for name, sub in props.items()}
        values: dict[str, Callable[[], Any]] = {
            "string": lambda: self.rng.choice(GOOD_STRINGS), "integer": lambda: self.rng.choice([1, 2, 5]),
            "number": lambda: self.rng.choice([0.5, 1.0, 0.07]), "boolean": lambda: self.rng.random() < 0.5}
        return values.get(kind or "", lambda: None)()

    def hostile(self) -> Any:
        return self.rng.choice(HOSTILE_VALUES)


def json_cases(schemas: Schemas, body_schema: dict[str, Any], count: int) -> list[tuple[str, bytes]]:
    """``(name, JSON bytes)`` bodies: shaped, trimmed, broken one field at a time, and not objects."""
    schema = schemas.resolve(body_schema)
    props: dict[str, Any] = schema.get("properties", {})
    required = [name for name in schema.get("required", []) if name in props]
    full = schemas.sample(schema)
    cases: list[tuple[str, Any]] = [("shaped", full), ("required only", {k: full[k] for k in required}),
                                    ("unknown field", {**full, "no_such_field": [1, 2]})]
    cases += [(f"without {name}", {k: v for k, v in full.items() if k != name}) for name in required]
    for _ in range(count):
        name = schemas.rng.choice(list(props) or ["anything"])
        value = schemas.hostile()
        cases.append((f"{name}={_short(value)}", {**schemas.sample(schema), name: value}))
    return [
        *((name, json.dumps(body).encode()) for name, body in cases),
        ("list body", b"[1, 2]"), ("string body", b'"images"'), ("null body", b"null"), ("empty body", b""),
        ("NaN", b'{"k": NaN, "temperature": Infinity}'), ("deep nesting", DEEP.encode()),
        ("not JSON", b"\xff\xfe{garbage"), ("BOM", b"\xef\xbb\xbf" + json.dumps(full).encode()),
        ("UTF-16", json.dumps(full).encode("utf-16")), ("duplicate keys", b'{"index": 1, "index": "x"}'),
    ]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:20]}…({len(text)})"


def multipart(body: dict[str, Any], boundary: str = "fuzzBoundary") -> bytes:
    """``body`` as a form: image strings become PNG files, everything else a JSON field."""
    parts = []
    for name, value in body.items():
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value) and name == "images":
            for i, _ in enumerate(value):
                parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{i}.png"\r\n'
                             "Content-Type: image/png\r\n\r\n".encode() + png_bytes(seed=i) + b"\r\n")
        else:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                         f"{json.dumps(value)}\r\n".encode())
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def framing_cases(shaped: dict[str, Any]) -> list[tuple[str, dict[str, str], bytes]]:
    """``(name, headers, body)`` sent as is over a socket: wrong media types and broken framing."""
    as_json, form = json.dumps(shaped).encode(), multipart(shaped)
    cut = form[: len(form) // 2]
    mp = "multipart/form-data; boundary=fuzzBoundary"
    return [
        ("multipart, no boundary", {"Content-Type": "multipart/form-data", "Content-Length": f"{len(as_json)}"}, as_json),
        ("multipart, boundary without value", {"Content-Type": "multipart/form-data; boundary", "Content-Length": "2"}, b"{}"),
        ("JSON under multipart", {"Content-Type": mp, "Content-Length": f"{len(as_json)}"}, as_json),
        ("multipart under JSON", {"Content-Type": "application/json", "Content-Length": f"{len(form)}"}, form),
        ("multipart, truncated", {"Content-Type": mp, "Content-Length": f"{len(cut)}"}, cut),
        ("multipart, short of Content-Length", {"Content-Type": mp, "Content-Length": f"{len(form)}"}, cut),
        ("JSON, short of Content-Length", {"Content-Type": "application/json",
                                           "Content-Length": f"{len(as_json) + 100}"}, as_json),
        ("chunked, no last chunk", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
         f"{len(as_json):x}\r\n".encode() + as_json + b"\r\n"),
        ("Content-Length 10**12", {"Content-Type": "application/json", "Content-Length": str(10**12)}, as_json),
        ("text/plain", {"Content-Type": "text/plain", "Content-Length": f"{len(as_json)}"}, as_json),
    ]


# -- sending ----------------------------------------------------------------------------------------
def has_message(status: int, body: bytes) -> bool:
    """Whether a 4xx carries a readable JSON message (ours, BentoML's, or OpenAI's shape)."""
    if not 400 <= status < 500:
        return True
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return False
    text = error.get("message") if isinstance(error, dict) else error
    return isinstance(text, str) and bool(text.strip())


def send_http(server: Server, operation: str, case: str, method: str, path: str, **kwargs: Any) -> Outcome:
    start = time.monotonic()
    try:
        response = requests.request(method, server.url + path, timeout=CLIENT_TIMEOUT, **kwargs)
    except requests.Timeout:
        return Outcome(operation, case, 0, False, time.monotonic() - start)
    return Outcome(operation, case, response.status_code, has_message(response.status_code, response.content),
                   time.monotonic() - start)


def send_raw(server: Server, operation: str, case: str, method: str, path: str, headers: dict[str, str],
             body: bytes) -> Outcome:
    answer = raw_request(server.port, method, path, headers, body, close_wait=0.0)
    return Outcome(operation, case, answer.status, has_message(answer.status, answer.body), answer.seconds)


def plan(server: Server, spec: dict[str, Any]) -> dict[str, list[Callable[[], Outcome]]]:
    """The cases of each operation of the document (``"POST /embed"``), each a call that sends it."""
    schemas = Schemas(spec, random.Random(SEED))
    per_operation = {}
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            name, method = f"{method.upper()} {path}", method.upper()
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                params = [p["name"] for p in op.get("parameters", [])] + ["unknown"]
                queries = [{p: _query(schemas.hostile()) for p in params} for _ in range(4)]
                cases = [lambda n=name, m=method, p=path, q=q: send_http(server, n, f"query {q!r:.30}", m, p, params=q)
                         for q in queries]
                cases.append(lambda n=name, m=method, p=path: send_raw(
                    server, n, "body short of Content-Length", m, p, {"Content-Length": "50"}, b"ab"))
                per_operation[name] = cases
                continue
            bodies = json_cases(schemas, content["schema"], count=8)
            cases = [lambda n=name, m=method, p=path, c=c, b=b: send_http(
                server, n, c, m, p, data=b, headers={"Content-Type": "application/json"}) for c, b in bodies]
            shaped = schemas.sample(content["schema"])
            cases.append(lambda n=name, m=method, p=path, s=shaped: send_http(
                server, n, "multipart form", m, p, data=multipart(s), headers={
                    "Content-Type": "multipart/form-data; boundary=fuzzBoundary"}))
            cases += [lambda n=name, m=method, p=path, c=c, h=h, b=b: send_raw(server, n, c, m, p, h, b)
                      for c, h, b in framing_cases(shaped)]
            per_operation[name] = cases
    return per_operation


def _query(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@pytest.mark.slow
def test_spec_driven_fuzz_finds_no_5xx_no_hang_and_leaves_the_server_ready(server: Server):
    spec = server.get("/docs.json").json()
    per_operation = plan(server, spec)
    interleaved = [case for row in zip_longest(*per_operation.values()) for case in row if case is not None]
    deadline = time.monotonic() + BUDGET_S
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(lambda send: send() if time.monotonic() < deadline else None, interleaved))
    done = [o for o in outcomes if o is not None]
    report(done, len(interleaved))

    per_op = Counter(o.operation for o in done)
    short = {name: per_op[name] for name, cases in per_operation.items()
             if per_op[name] < min(len(cases), MIN_PER_OPERATION)}
    assert not short, f"operations cut short by the time budget: {short}"
    hung = [o for o in done if o.status == 0]
    failed = [o for o in done if o.status >= 500]
    silent = [o for o in done if not o.message]
    assert not hung, f"no answer within {CLIENT_TIMEOUT} s: {hung}"
    assert not failed, f"5xx answers: {failed}"
    assert not silent, f"4xx without a JSON message: {silent}"
    assert server.get("/readyz").status_code == 200
    assert server.post("/embed", {"images": [image_uri(7)]}).status_code == 200


def report(done: list[Outcome], planned: int) -> None:
    """Counts per status code, overall and per kind of case, on the test's output (``pytest -s``)."""
    by_status = Counter(o.status for o in done)
    slowest = max(done, key=lambda o: o.seconds)
    print(f"\nfuzz: {len(done)} of {planned} planned requests sent over {len({o.operation for o in done})} operations")
    print("status  count")
    for status, count in sorted(by_status.items()):
        print(f"{status:>6}  {count:>5}")
    framing = {case for case, _, _ in framing_cases({})}
    print("framing case (every POST operation)        statuses")
    for case in sorted(framing):
        statuses = Counter(o.status for o in done if o.case == case)
        print(f"{case:<42} {dict(sorted(statuses.items()))}")
    print(f"slowest answer: {slowest.seconds:.2f} s ({slowest.operation}, {slowest.case})")

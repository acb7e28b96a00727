"""A malformed request body is the caller's mistake, never a server error (issue 16, item 2).

Table-driven over the app's own route table and its OpenAPI page: every route that takes a JSON body documents it
there, and gets, with alice's write token on her own Space (root's on the admin routes) so that nothing but the
body stands in the way: bodies that are not objects, objects missing their required fields, each field with a
value of a type it does not take (`"sleepTimeSeconds": "x"`, nested junk), and text that is not JSON. Every answer
is a 4xx with a message (the Hub's `error` field and X-Error-Message header); a wrong field is refused by name.
"""

from __future__ import annotations

import re

import pytest
from fastapi import params
from fastapi.routing import APIRoute, iter_route_contexts

from tests.security.web_app import Web, make_web

PARAMS = {"owner": "alice", "name": "demo", "rev": "main", "branch": "dev", "tag": "v1", "provider": "github"}
# Each wrong value, and the JSON-schema types that would accept it (a lax int takes "5", never "x").
WRONG = [
    (12345, {"integer", "number"}),
    ("x", {"string"}),
    ({"nested": ["junk", {"deeper": None}]}, {"object"}),
    (["junk"], {"array"}),
]
NOT_OBJECTS = [[], ["a", "b"], "text", 7, True]


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Web:
    return make_web(tmp_path_factory.mktemp("bodies"))


def json_routes(web: Web) -> list[tuple[str, str]]:
    """(method, path) of every route with a JSON body parameter (form posts and raw-body routes are not)."""
    out = []
    for ctx in iter_route_contexts(web.app.routes):
        route = ctx.original_route
        if not isinstance(route, APIRoute) or not route.dependant.body_params:
            continue
        if any(isinstance(p.field_info, params.Form) for p in route.dependant.body_params):
            continue
        out.extend((method, ctx.path) for method in sorted(route.methods))
    return out


def concrete(path: str) -> str:
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: PARAMS[m.group(1)], path)


def body_schema(web: Web, method: str, path: str) -> dict:
    spec = web.app.openapi()
    documented = re.sub(r"{(\w+):\w+}", r"{\1}", path)  # the page drops Starlette's `:path` convertor
    content = spec["paths"][documented][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
    return resolve(spec, content)


def resolve(spec: dict, schema: dict) -> dict:
    if "$ref" in schema:
        return resolve(spec, spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
    for option in schema.get("anyOf", []):  # an optional body: `Model | None`
        if "$ref" in option:
            return resolve(spec, option)
    return schema


def types_of(schema: dict) -> set[str]:
    """The JSON types a property takes; empty when it takes anything."""
    if schema.get("format") == "date-time":  # a datetime also takes a Unix time
        return {"string", "integer", "number"}
    if "type" in schema:
        return {schema["type"]}
    if "$ref" in schema:
        return {"object"}
    options = schema.get("anyOf", [])
    return set().union(*(types_of(o) for o in options)) if options else set()


def malformed(schema: dict) -> list[tuple[object, str | None]]:
    """(body, field its error must name) for one body schema."""
    bodies: list[tuple[object, str | None]] = [(b, None) for b in NOT_OBJECTS]
    required = schema.get("required", [])
    if required:
        bodies.append(({}, required[0]))
    for name, prop in schema.get("properties", {}).items():
        takes = types_of(prop)
        if not takes:
            continue
        bodies.extend(({name: value}, name) for value, accepted in WRONG if not accepted & takes)
        if "array" in takes:  # a list of objects with junk inside
            bodies.append(({name: [{"nested": ["junk"]}]}, name))
    return bodies


def caller_for(web: Web, path: str):
    client = web.api("root" if path.startswith("/api/admin/") else "alice")
    if path == "/api/metering/gpu-samples":  # the agent's own credential, not a user's token
        client.headers["Authorization"] = f"Bearer {web.svc.settings.gpu_agent_credential()}"
    return client


def test_the_walk_finds_the_json_routes(web: Web) -> None:
    routes = json_routes(web)
    for wanted in (
        ("POST", "/api/repos/create"),
        ("POST", "/api/spaces/{owner}/{name}/hardware"),
        ("POST", "/api/spaces/{owner}/{name}/secrets"),
        ("PUT", "/api/billing/limit"),
    ):
        assert wanted in routes
    assert len(routes) >= 17


def test_every_json_body_is_documented(web: Web) -> None:
    """The OpenAPI page names each route's fields, in the Hub's spelling."""
    problems = [f"{m} {p}" for m, p in json_routes(web) if not body_schema(web, m, p).get("properties")]
    assert not problems, "bodies without documented fields:\n" + "\n".join(problems)
    hardware = body_schema(web, "POST", "/api/spaces/{owner}/{name}/hardware")["properties"]
    assert {"flavor", "sleepTimeSeconds"} <= set(hardware)


def test_every_malformed_body_is_a_4xx_with_a_message(web: Web) -> None:
    problems = []
    for method, path in json_routes(web):
        client = caller_for(web, path)
        for body, field in malformed(body_schema(web, method, path)):
            resp = client.request(method, concrete(path), json=body)
            error = resp.json().get("error", "") if resp.headers.get("content-type") == "application/json" else ""
            if not 400 <= resp.status_code < 500 or not error or not resp.headers.get("x-error-message"):
                problems.append(f"{method} {path} {body!r}: {resp.status_code} {resp.text[:200]}")
            elif field and field not in error:
                problems.append(f"{method} {path} {body!r}: the error does not name {field!r}: {error}")
        resp = client.request(
            method, concrete(path), content=b'{"not": json', headers={"Content-Type": "application/json"}
        )
        if resp.status_code != 400:
            problems.append(f"{method} {path} (not JSON): {resp.status_code} {resp.text[:200]}")
    assert not problems, "malformed bodies not refused as the caller's mistake:\n" + "\n".join(problems)


def test_a_string_sleep_time_is_refused_by_name(web: Web) -> None:
    resp = web.api("alice").post(
        "/api/spaces/alice/demo/hardware", json={"flavor": "cpu-basic", "sleepTimeSeconds": "x"}
    )
    assert resp.status_code == 400
    assert "sleepTimeSeconds" in resp.json()["error"] and "sleepTimeSeconds" in resp.headers["x-error-message"]

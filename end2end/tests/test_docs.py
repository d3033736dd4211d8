"""The served documentation against a live demo server (the real binary).

* ``/openapi.json`` validates as OpenAPI 3.1 with ``openapi-spec-validator`` and equals the
  committed snapshot ``docs/openapi.json``.
* Live answers match the document: for most operations, the answer's body validates
  against the schema the document gives for that status — strictly (no undocumented
  fields, every required field present) for everything tokengate writes itself, and
  loosely for model answers passed through from the upstream.
* The quickstart works as written: its ``sh`` blocks that run ``curl`` and its ``python``
  blocks, taken from ``/docs/quickstart.md`` as the server serves it (with this server's
  URL in it), run in a shell where only the placeholders of the key are substituted —
  the key comes from running the quickstart's own key-creation command.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate

from conftest import REPO_ROOT, server_binary, start_gateway, stop_gateway


@pytest.fixture(scope="module")
def docs_gw():
    with tempfile.TemporaryDirectory(prefix="tokengate-e2e-docs-") as tmp:
        gw = start_gateway(Path(tmp))
        try:
            yield gw
        finally:
            stop_gateway(gw, "docs_gateway")


@pytest.fixture(scope="module")
def admin_token(docs_gw) -> str:
    """An access token of the demo administrator (who owns the demo key and its $5)."""
    m = re.search(r"Admin email:\s+(\S+)", docs_gw.stdout_path.read_text(errors="replace"))
    assert m, "the demo admin's email was not printed"
    proc = subprocess.run(
        [str(server_binary()), "admin", "token", "--email", m.group(1)],
        env=docs_gw.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    return proc.stdout.strip().splitlines()[-1].strip()


@pytest.fixture(scope="module")
def doc(docs_gw) -> dict:
    r = httpx.get(f"{docs_gw.url}/openapi.json", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def test_document_validates_and_equals_the_snapshot(doc):
    validate(doc)  # OpenAPI 3.1 (detected from the "openapi" field)
    assert doc["openapi"].startswith("3.1")
    snapshot = json.loads((REPO_ROOT / "docs" / "openapi.json").read_text())
    assert doc == snapshot, "the served document differs from docs/openapi.json"


# --------------------------------------------------------------------------
# Live answers against the documented schemas
# --------------------------------------------------------------------------

PASSTHROUGH = {"ChatCompletion", "MessagesResponse", "EmbeddingsResponse"}


def _strict(doc: dict) -> dict:
    """The document with ``additionalProperties: false`` on every object schema that lists
    its properties, except the upstream answers tokengate passes through."""
    strict = copy.deepcopy(doc)

    def walk(node, passthrough: bool):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and not passthrough:
                node["additionalProperties"] = False
            for v in node.values():
                walk(v, passthrough)
        elif isinstance(node, list):
            for v in node:
                walk(v, passthrough)

    for name, schema in strict["components"]["schemas"].items():
        walk(schema, name in PASSTHROUGH)
    walk(strict["paths"], False)
    return strict


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class Checker:
    def __init__(self, doc: dict, base: str):
        self.doc = doc
        self.strict = _strict(doc)
        self.base = base
        # A fresh connection per request: the gateway answers some errors (401) before it
        # reads the request body, and then closes the connection rather than reuse it.
        self.http = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
        self.checked: set[tuple[str, str, int]] = set()

    def check(self, method: str, path: str, status: int, *, url: str | None = None, strict: bool = True, **kw):
        """Calls ``url`` (default ``path``) and validates the answer against the schema of
        ``path``'s ``method`` for ``status`` in the document."""
        r = self.http.request(method.upper(), url or path, **kw)
        assert r.status_code == status, (method, url or path, r.status_code, r.text[:500])
        op = self.doc["paths"][path][method]
        assert str(status) in op["responses"], f"{method} {path} answered {status}, which is not documented"
        content = op["responses"][str(status)].get("content", {})
        ctype = r.headers.get("content-type", "").split(";")[0]
        if not content:  # e.g. a 303 redirect: no body to describe
            self.checked.add((method, path, status))
            return r
        assert ctype in content, f"{method} {path} {status}: {ctype} is not documented ({list(content)})"
        if ctype == "application/json":
            pointer = _pointer("paths", path, method, "responses", str(status), "content", ctype, "schema")
            root = dict(self.strict if strict else self.doc)
            root["$ref"] = pointer
            jsonschema.Draft202012Validator(root).validate(r.json())
        self.checked.add((method, path, status))
        return r


def _wait_for_logs(c: Checker, headers: dict, n: int = 1) -> list:
    deadline = time.time() + 15
    while time.time() < deadline:
        data = c.http.get("/api/v1/me/request-logs", headers=headers).json()["data"]
        if len(data) >= n:
            return data
        time.sleep(0.1)
    raise AssertionError("request logs did not arrive")


def test_live_answers_match_the_documented_schemas(docs_gw, doc, admin_token):
    c = Checker(doc, docs_gw.url)
    key = {"Authorization": f"Bearer {docs_gw.api_key}"}
    tok = {"Authorization": f"Bearer {admin_token}"}
    chat = {"model": "tokengate-fast", "messages": [{"role": "user", "content": "Hello docs"}]}

    # Health.
    c.check("get", "/healthz", 200)
    c.check("get", "/readyz", 200)

    # Gateway: tokengate's own bodies strictly, upstream answers loosely.
    c.check("get", "/v1/models", 200, headers=key)
    c.check("get", "/v1/models", 401)
    r = c.check("post", "/v1/chat/completions", 200, strict=False, headers=key, json=chat)
    request_id = r.headers["x-request-id"]
    c.check("post", "/v1/chat/completions", 401, json=chat)
    c.check("post", "/v1/chat/completions", 400, headers=key, json={"model": "tokengate-fast", "messages": []})
    c.check("post", "/v1/chat/completions", 404, headers=key, json={**chat, "model": "no/such-model"})
    c.check(
        "post", "/v1/messages", 200, strict=False, headers={"x-api-key": docs_gw.api_key},
        json={"model": "tokengate-fast", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]},
    )
    c.check("post", "/v1/messages", 401, json={"model": "tokengate-fast", "max_tokens": 64, "messages": []})
    c.check("post", "/v1/messages", 400, headers=key, json={"model": "tokengate-fast", "messages": [{"role": "user", "content": "x"}]})
    c.check("post", "/v1/embeddings", 200, strict=False, headers=key, json={"model": "mock/fast-1", "input": ["a b", "c"]})
    c.check("post", "/v1/embeddings", 401, json={"model": "mock/fast-1", "input": "a"})
    r = c.check("post", "/v1/responses", 200, strict=False, headers=key,
                json={"model": "tokengate-fast", "input": "Hello docs"})
    rid = r.json()["id"]
    c.check("post", "/v1/responses", 401, json={"model": "tokengate-fast", "input": "x"})
    c.check("get", "/v1/responses/{id}", 200, strict=False, url=f"/v1/responses/{rid}", headers=key)
    c.check("get", "/v1/responses/{id}/input_items", 200, strict=False,
            url=f"/v1/responses/{rid}/input_items", headers=key)
    c.check("delete", "/v1/responses/{id}", 200, strict=False, url=f"/v1/responses/{rid}", headers=key)
    c.check("get", "/v1/responses/{id}", 404, url=f"/v1/responses/{rid}", headers=key)

    # Device flow.
    c.check("get", "/api/v1/auth/discovery", 200)
    r = c.check("post", "/api/v1/auth/device/code", 200, data={"client_id": "tokengate-cli"})
    grant = r.json()
    c.check("post", "/api/v1/auth/device/code", 401, data={"client_id": "someone-else"})
    c.check(
        "post", "/api/v1/auth/token", 400,
        data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": "tokengate-cli",
              "device_code": grant["device_code"]},
    )
    c.check("get", "/api/v1/auth/device/request", 200, headers=tok, params={"user_code": grant["user_code"]})

    # Account.
    c.check("get", "/api/v1/me", 200, headers=tok)
    c.check("get", "/api/v1/me", 401)
    c.check("patch", "/api/v1/me", 200, headers=tok, json={"display_name": "Docs Admin"})
    c.check("get", "/api/v1/me/sessions", 200, headers=tok)
    c.check("get", "/api/v1/balance", 200, headers=tok)
    c.check("get", "/api/v1/me/usage", 200, headers=tok, params={"days": 7})
    c.check("get", "/api/v1/me/usage", 400, headers=tok, params={"days": 0})
    c.check("get", "/api/v1/me/usage/daily", 200, headers=tok, params={"days": 3})

    # Keys.
    r = c.check(
        "post", "/api/v1/me/keys", 201, headers=tok,
        json={"name": "docs-check", "spend_limit_usd": "1.50", "models": ["tokengate-fast"], "rpm": 60},
    )
    kid = r.json()["id"]
    c.check("post", "/api/v1/me/keys", 400, headers=tok, json={"name": "x", "colour": "blue"})
    c.check("post", "/api/v1/me/keys", 422, headers=tok, json={"name": "x", "rpm": -1})
    c.check("get", "/api/v1/me/keys", 200, headers=tok)
    c.check("get", "/api/v1/me/keys/{id}", 200, url=f"/api/v1/me/keys/{kid}", headers=tok)
    c.check("get", "/api/v1/me/keys/{id}", 404, url="/api/v1/me/keys/999999", headers=tok)
    c.check("patch", "/api/v1/me/keys/{id}", 200, url=f"/api/v1/me/keys/{kid}", headers=tok, json={"status": "disabled"})
    c.check("post", "/api/v1/me/keys/{id}/rotate", 200, url=f"/api/v1/me/keys/{kid}/rotate", headers=tok)
    c.check("delete", "/api/v1/me/keys/{id}", 200, url=f"/api/v1/me/keys/{kid}", headers=tok)

    # Billing (no payment provider on this server).
    c.check("post", "/api/v1/topup", 503, headers=tok, json={"amount_usd": "5.00"})
    c.check("post", "/api/v1/topup", 422, headers=tok, json={"amount_usd": "0.50"})
    c.check("get", "/api/v1/me/billing/payments", 200, headers=tok)
    c.check("get", "/api/v1/me/billing/statement", 200, headers=tok)
    c.check("get", "/api/v1/me/billing/statement.csv", 200, headers=tok)
    c.check("get", "/api/v1/me/billing/statement.pdf", 200, headers=tok)
    _wait_for_logs(c, tok)
    c.check("get", "/api/v1/me/request-logs", 200, headers=tok, params={"limit": 5})
    c.check(
        "get", "/api/v1/me/request-logs/{request_id}", 200,
        url=f"/api/v1/me/request-logs/{request_id}", headers=tok,
    )
    c.check("get", "/api/v1/me/request-logs.csv", 200, headers=tok)
    c.check(
        "post", "/webhooks/payments/{payment_provider}", 503, url="/webhooks/payments/stripe",
        content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"},
    )
    c.check("post", "/webhooks/payments/{payment_provider}", 404, url="/webhooks/payments/nope", content=b"{}")

    # Admin.
    a = "/api/v1/admin"
    c.check("get", f"{a}/providers", 200, headers=tok)
    c.check("get", f"{a}/providers", 401)
    c.check("put", f"{a}/providers/{{name}}", 200, url=f"{a}/providers/docsmock", headers=tok, json={"kind": "mock"})
    c.check("get", f"{a}/providers/{{name}}", 200, url=f"{a}/providers/docsmock", headers=tok)
    c.check("post", f"{a}/providers/{{name}}/test", 200, url=f"{a}/providers/docsmock/test", headers=tok)
    c.check(
        "put", f"{a}/models/{{name}}", 200, url=f"{a}/models/docsmock/m1", headers=tok,
        json={"provider": "docsmock", "upstream_model": "m1", "input_usd_per_m": "1", "output_usd_per_m": "2"},
    )
    c.check("get", f"{a}/models/{{name}}", 200, url=f"{a}/models/docsmock/m1", headers=tok)
    c.check("get", f"{a}/models", 200, headers=tok)
    c.check(
        "put", f"{a}/aliases/{{name}}", 200, url=f"{a}/aliases/docs-alias", headers=tok,
        json={"targets": [{"model": "docsmock/m1"}, {"model": "mock/fast-1", "priority": 1}]},
    )
    c.check("get", f"{a}/aliases/{{name}}", 200, url=f"{a}/aliases/docs-alias", headers=tok)
    c.check("get", f"{a}/aliases/{{name}}/dry-run", 200, url=f"{a}/aliases/docs-alias/dry-run", headers=tok)
    c.check("get", f"{a}/aliases", 200, headers=tok)
    c.check("delete", f"{a}/models/{{name}}", 409, url=f"{a}/models/docsmock/m1", headers=tok)
    c.check("delete", f"{a}/aliases/{{name}}", 200, url=f"{a}/aliases/docs-alias", headers=tok)
    c.check("delete", f"{a}/models/{{name}}", 200, url=f"{a}/models/docsmock/m1", headers=tok)
    c.check("delete", f"{a}/providers/{{name}}", 200, url=f"{a}/providers/docsmock", headers=tok)
    c.check(
        "put", f"{a}/key-groups/{{name}}", 200, url=f"{a}/key-groups/docs-group", headers=tok,
        json={"allowed_providers": ["mock"], "allowed_models": None},
    )
    c.check("get", f"{a}/key-groups/{{name}}", 200, url=f"{a}/key-groups/docs-group", headers=tok)
    c.check("get", f"{a}/key-groups", 200, headers=tok)
    c.check("delete", f"{a}/key-groups/{{name}}", 200, url=f"{a}/key-groups/docs-group", headers=tok)
    r = c.check("get", f"{a}/users", 200, headers=tok)
    uid = r.json()[0]["id"]
    c.check("get", f"{a}/users/{{id}}/ledger", 200, url=f"{a}/users/{uid}/ledger", headers=tok)
    c.check(
        "post", f"{a}/users/{{id}}/credit", 200, url=f"{a}/users/{uid}/credit", headers=tok,
        json={"amount_usd": "1.00", "kind": "promo", "reason": "docs check"},
    )
    c.check(
        "post", f"{a}/users/{{id}}/credit", 422, url=f"{a}/users/{uid}/credit", headers=tok,
        json={"amount_usd": "1.00"},
    )
    c.check("post", f"{a}/users/{{id}}/suspend", 409, url=f"{a}/users/{uid}/suspend", headers=tok)
    c.check("post", f"{a}/users/{{id}}/reactivate", 200, url=f"{a}/users/{uid}/reactivate", headers=tok)
    c.check("get", f"{a}/ledger/verify", 200, headers=tok)
    c.check("get", f"{a}/request-logs", 200, headers=tok)
    c.check("get", f"{a}/health", 200, headers=tok)

    # Portal sign-in forms: redirects.
    form = {"Origin": docs_gw.url}
    r = c.check("post", "/auth/login", 303, headers=form, data={"email": "nobody@example.com", "password": "wrong password"})
    assert r.headers["location"].startswith("/login?error="), r.headers
    r = c.check("post", "/auth/signup", 303, headers=form, data={"email": "new@example.com", "password": "short"})
    assert r.headers["location"] == "/signup?error=weak_password", r.headers
    c.check("post", "/auth/logout", 303, headers=form)
    c.check("post", "/auth/logout-everywhere", 303, headers=form)
    r = c.check("post", "/auth/device", 303, headers=form, data={"user_code": grant["user_code"], "action": "approve"})
    assert r.headers["location"].startswith("/login?next="), r.headers
    c.check("get", "/auth/oidc/{id}/start", 303, url="/auth/oidc/nope/start")
    c.check("get", "/auth/oidc/{id}/callback", 303, url="/auth/oidc/nope/callback?code=x&state=y")
    r = c.check("get", "/auth/verify-email", 303, url="/auth/verify-email?token=forged")
    assert r.headers["location"] == "/login?error=verify_link", r.headers
    r = c.check("post", "/auth/verify-email/resend", 303, headers=form)
    assert r.headers["location"].startswith("/login?next="), r.headers

    # Docs.
    c.check("get", "/openapi.json", 200)
    for path in ("/llms.txt", "/llms-full.txt"):
        r = c.check("get", path, 200)
        assert r.text.startswith("# tokengate")

    operations = {(m, p) for p, item in doc["paths"].items() for m in item}
    covered = {(m, p) for m, p, _ in c.checked}
    assert operations - covered == {
        # Needs a paid top-up (the billing suite pays through a fake Stripe).
        ("get", "/api/v1/me/billing/payments/{id}/receipt.pdf"),
        # Would end the access token the rest of this module uses.
        ("post", "/api/v1/me/logout-everywhere"),
    }, sorted(operations - covered)


# --------------------------------------------------------------------------
# The quickstart, as written
# --------------------------------------------------------------------------

FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.S | re.M)


def _blocks(markdown: str) -> list[tuple[str, str]]:
    out = []
    for m in FENCE.finditer(markdown):
        indent = len(m.group(1))
        code = "\n".join(line[indent:] for line in m.group(3).splitlines())
        out.append((m.group(2), code + "\n"))
    return out


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "TOKENGATE_"))}
    # The quickstart's `python` is the one with the SDKs installed.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(script: str, env: dict) -> str:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"failed ({proc.returncode}):\n{script}\n--- stderr:\n{proc.stderr[-2000:]}\n--- stdout:\n{proc.stdout[-2000:]}"
    return proc.stdout


def test_quickstart_commands_work_as_written(docs_gw, admin_token):
    r = httpx.get(f"{docs_gw.url}/docs/quickstart.md", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/markdown")
    md = r.text
    assert "{{base_url}}" not in md and docs_gw.url in md
    blocks = _blocks(md)
    sh = [code for lang, code in blocks if lang == "sh"]
    python = [code for lang, code in blocks if lang == "python"]

    # Step 1: the API way of creating a key, with an access token as the docs say.
    create = [b for b in sh if "/api/v1/me/keys" in b and b.lstrip().startswith("curl")]
    assert len(create) == 1, create
    env = _clean_env()
    env["TOKENGATE_ACCESS_TOKEN"] = admin_token
    created = json.loads(_run(create[0], env))
    raw = created["raw"]
    assert raw.startswith("sk-tg-")

    # Step 2: the environment block, with the key's placeholder replaced by the new key.
    exports = [b for b in sh if "export OPENAI_BASE_URL" in b]
    assert len(exports) == 1, exports
    assert 'TOKENGATE_API_KEY="sk-tg-..."' in exports[0]
    exports = exports[0].replace('"sk-tg-..."', f'"{raw}"')
    env = _clean_env()
    seen = _run(exports + 'printf "%s\\n%s\\n" "$OPENAI_BASE_URL" "$ANTHROPIC_BASE_URL"\n', env).split()
    assert seen == [f"{docs_gw.url}/v1", docs_gw.url], seen

    # Step 3: every curl call after the environment block, and every Python block.
    calls = [b for b in sh if b.lstrip().startswith("curl") and b not in create]
    assert len(calls) >= 2, calls
    for block in calls:
        out = json.loads(_run(exports + block, env))
        assert "error" not in out, out
        if "/models" in block:
            assert "tokengate-fast" in {m["id"] for m in out["data"]}, out
        else:
            assert out["choices"][0]["message"]["content"], out
    assert len(python) >= 2, python
    for block in python:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(block)
        try:
            out = _run(exports + f"python {f.name}\n", env)
        finally:
            os.unlink(f.name)
        assert out.strip(), f"no output from:\n{block}"

    # The model calls (not the model list) were billed to the key the quickstart created.
    billed = len([b for b in calls if "/models" not in b]) + len(python)
    tok = {"Authorization": f"Bearer {admin_token}"}
    deadline = time.time() + 15
    while time.time() < deadline:
        logs = httpx.get(
            f"{docs_gw.url}/api/v1/me/request-logs", headers=tok, params={"key_id": created["id"]}, timeout=30
        ).json()["data"]
        if len(logs) >= billed:
            break
        time.sleep(0.2)
    assert len(logs) == billed, logs
    assert all(entry["status"] == 200 for entry in logs), logs

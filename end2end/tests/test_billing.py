"""Billing end to end: Stripe top-ups against a fake Stripe API, webhooks signed with npm
``stripe``'s own helper, the ledger, monthly statements (JSON, CSV and PDF read back with
Debian's ``pdftotext``), receipts, the request-log export and admin credit.

One tokengate-server (``billing_gw``) is configured with the fake Stripe
(``TOKENGATE_STRIPE_*``) and the fake upstream (three priced models and one that always
fails); each test signs up customers of its own, so balances never mix. Money is compared
exactly: nano-USD integers and ``Decimal`` parsing of every printed amount.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from conftest import PROVIDER_KEY, server_binary, start_gateway, stop_gateway
from e2e_helpers import poll, raw_post
from fake_stripe import (
    STRIPE_SECRET_KEY,
    STRIPE_WEBHOOK_SECRET,
    StripeSigner,
    event_body,
    new_session_id,
    session_object,
    start_fake_stripe,
)

NANO = 1_000_000_000
TOPUP_MAX_USD = 500
PASSWORD = "correct-horse-battery-staple"

# Model -> (input, output) USD per million tokens. gpt-odd uses all nine decimals, so
# request costs are not round numbers and any rounding in a total shows.
PRICES = {
    "fake/gpt-test": ("0.15", "0.60"),
    "fake/gpt-big": ("2.5", "10"),
    "fake/gpt-odd": ("0.123456789", "1.987654321"),
    "fake/gpt-fail": ("1", "2"),
}
COMPLETION_TOKENS = 7  # the fake upstream's answer (FAKE_COMPLETION_TOKENS)

STATEMENT_CSV_HEADER = [
    "kind",
    "date",
    "description",
    "reference",
    "model",
    "requests",
    "tokens_in",
    "tokens_out",
    "amount_usd",
]
LOGS_CSV_HEADER = [
    "created_at",
    "request_id",
    "key_id",
    "key_name",
    "endpoint",
    "model",
    "served_model",
    "provider",
    "status",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "latency_ms",
    "error",
]
EXACT_AMOUNT = re.compile(r"^-?\d+\.\d{2,9}$")


# --------------------------------------------------------------------------
# Harness
# --------------------------------------------------------------------------


def billing_config(fake_upstream) -> str:
    parts = [
        f"""
[[providers]]
name = "fake"
kind = "openai"
base_url = "{fake_upstream.base_url}"
api_key = "{PROVIDER_KEY}"

[[providers]]
name = "fakefail"
kind = "openai"
base_url = "{fake_upstream.fault_base_url("status:500")}"
api_key = "{PROVIDER_KEY}"
"""
    ]
    for name, (inp, out) in PRICES.items():
        provider = "fakefail" if name == "fake/gpt-fail" else "fake"
        parts.append(
            f"""
[[models]]
name = "{name}"
provider = "{provider}"
upstream_model = "{name.split("/", 1)[1]}"
input_usd_per_m = "{inp}"
output_usd_per_m = "{out}"
"""
        )
    return "".join(parts)


@pytest.fixture(scope="module")
def stripe_fake():
    fake = start_fake_stripe()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def signer():
    problem = StripeSigner.check_installed()
    if problem:
        pytest.fail(problem)
    return StripeSigner(STRIPE_WEBHOOK_SECRET)


@pytest.fixture(scope="module")
def billing_gw(fake_upstream, stripe_fake):
    with tempfile.TemporaryDirectory(prefix="tokengate-e2e-billing-") as tmp:
        gw = start_gateway(
            Path(tmp),
            billing_config(fake_upstream),
            {
                "TOKENGATE_STRIPE_SECRET_KEY": STRIPE_SECRET_KEY,
                "TOKENGATE_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
                "TOKENGATE_STRIPE_API_BASE": stripe_fake.api_base,
                "TOKENGATE_TOPUP_MAX_USD": str(TOPUP_MAX_USD),
                # Every customer of this module signs up from 127.0.0.1.
                "TOKENGATE_SIGNUPS_PER_ADDRESS_PER_HOUR": "0",
            },
        )
        try:
            yield gw
        finally:
            stop_gateway(gw, "billing_gateway")


def admin_token(gw) -> str:
    """An access token for the instance's demo administrator (``tokengate-server admin
    token``); fails (never skips) when it cannot be had."""
    m = re.search(r"Admin email:\s+(\S+)", gw.stdout_path.read_text(errors="replace"))
    assert m, "the demo admin's email was not printed on stdout"
    args = [str(server_binary()), "admin", "token", "--email", m.group(1)]
    if gw.config_path is not None:
        args += ["--config", str(gw.config_path)]
    proc = subprocess.run(args, env=gw.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"`tokengate-server admin token` failed: {proc.stderr[-500:]}"
    token = proc.stdout.strip().splitlines()[-1].strip()
    assert token and " " not in token, proc.stdout
    return token


@pytest.fixture(scope="module")
def admin(billing_gw):
    token = admin_token(billing_gw)
    client = httpx.Client(base_url=billing_gw.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    yield client
    client.close()


class Customer:
    """A customer signed up through the portal form (``POST /auth/signup``), calling
    ``/api/v1`` with the portal session cookie (same-origin, like the portal)."""

    def __init__(self, gw, label: str) -> None:
        self.gw = gw
        self.email = f"{label}-{secrets.token_hex(4)}@example.com"
        self.http = httpx.Client(base_url=gw.url, headers={"Origin": gw.url}, follow_redirects=False, timeout=30)
        r = self.http.post("/auth/signup", data={"email": self.email, "password": PASSWORD, "display_name": label})
        assert r.status_code == 303 and r.headers.get("location") == "/console", (
            r.status_code,
            r.headers,
            r.text[:300],
        )
        me = self.json("GET", "/api/v1/me")
        assert me["email"] == self.email, me
        self.id = me["id"]

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        return self.http.request(method, path, **kw)

    def json(self, method: str, path: str, expect: int = 200, **kw):
        r = self.request(method, path, **kw)
        assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text[:1000]}"
        return r.json()

    def topup(self, amount) -> dict:
        return self.json("POST", "/api/v1/topup", json={"amount_usd": amount})

    def payments(self) -> list[dict]:
        out = self.json("GET", "/api/v1/me/billing/payments")
        assert isinstance(out, list), out
        return out

    def payment(self, session_id: str) -> dict:
        found = [p for p in self.payments() if p["session_id"] == session_id]
        assert len(found) == 1, (session_id, self.payments())
        return found[0]

    def balance_usd(self) -> Decimal:
        b = self.json("GET", "/api/v1/balance")
        assert b["currency"] == "USD", b
        return Decimal(b["balance_usd"])

    def new_key(self, name: str) -> dict:
        k = self.json("POST", "/api/v1/me/keys", expect=201, json={"name": name})
        assert k["raw"].startswith("sk-tg-"), k
        return k

    def statement(self, month: str) -> dict:
        return self.json("GET", "/api/v1/me/billing/statement", params={"month": month})

    def close(self) -> None:
        self.http.close()


@pytest.fixture()
def customers(billing_gw):
    made: list[Customer] = []

    def make(label: str = "cust") -> Customer:
        c = Customer(billing_gw, label)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def balance_nano(gw, user_id) -> int:
    return gw.query("SELECT balance_nano FROM users WHERE id = ?", (user_id,))[0][0]


def ledger(gw, user_id) -> list[dict]:
    return [dict(r) for r in gw.query("SELECT * FROM ledger_entries WHERE user_id = ? ORDER BY id", (user_id,))]


def topup_entries(gw, user_id) -> list[dict]:
    return [e for e in ledger(gw, user_id) if e["kind"] == "topup"]


def snapshot(gw, cust: Customer):
    """Everything a webhook could change for ``cust``."""
    return (
        balance_nano(gw, cust.id),
        [(e["id"], e["kind"], e["amount_nano"]) for e in ledger(gw, cust.id)],
        sorted((p["session_id"], p["status"]) for p in cust.payments()),
    )


def deliver(gw, body: bytes, signature: str | None, provider: str = "stripe"):
    """POSTs a webhook like Stripe does; returns (status, parsed JSON or raw bytes)."""
    headers = {
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Content-Type": "application/json; charset=utf-8",
    }
    if signature is not None:
        headers["Stripe-Signature"] = signature
    status, _, raw = raw_post(f"{gw.url}/webhooks/payments/{provider}", body, headers)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def assert_received(status, body) -> None:
    assert status == 200, (status, body)
    assert isinstance(body, dict) and body.get("received") is True, body


def assert_api_error(r: httpx.Response, statuses=(422, 400)) -> dict:
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    payload = r.json()
    err = payload.get("error")
    assert isinstance(err, dict), payload
    for k in ("message", "type", "code"):
        assert k in err, f"missing {k!r} in {payload}"
    assert isinstance(err["message"], str) and err["message"], payload
    return err


def verify_ledger(admin, user_id=None) -> dict:
    params = {"user_id": user_id} if user_id is not None else {}
    r = admin.get("/api/v1/admin/ledger/verify", params=params)
    assert r.status_code == 200, r.text[:500]
    v = r.json()
    assert v["ok"] is True and v["mismatches"] == [] and v["checked"] >= 1, v
    return v


def pdf_text(data: bytes, layout: bool = True) -> str:
    """Text of a PDF through Debian's ``pdftotext`` (poppler-utils)."""
    exe = shutil.which("pdftotext")
    if exe is None:
        pytest.fail("pdftotext is missing: install Debian's poppler-utils (scripts/setup.sh test does)")
    assert data.startswith(b"%PDF-"), data[:100]
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(data)
        f.flush()
        args = [exe] + (["-layout"] if layout else []) + [f.name, "-"]
        proc = subprocess.run(args, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode("utf-8", errors="replace")


def pdf_overlaps(data: bytes) -> list[tuple[str, str]]:
    """Pairs of words a PDF draws over each other (same line, intersecting boxes), from
    ``pdftotext -bbox``: a table cell running into the next column shows up here."""
    exe = shutil.which("pdftotext")
    if exe is None:
        pytest.fail("pdftotext is missing: install Debian's poppler-utils (scripts/setup.sh test does)")
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(data)
        f.flush()
        proc = subprocess.run([exe, "-bbox", f.name, "-"], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = []
    for page in proc.stdout.decode("utf-8", errors="replace").split("<page ")[1:]:
        words = [
            (float(a), float(b), float(c), float(d), html.unescape(t))
            for a, b, c, d, t in re.findall(
                r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>', page
            )
        ]
        for i, (x0, y0, x1, y1, t) in enumerate(words):
            for u0, v0, u1, v1, w in words[i + 1 :]:
                same_line = min(y1, v1) - max(y0, v0) > 0.5 * min(y1 - y0, v1 - v0)
                if same_line and min(x1, u1) - max(x0, u0) > 0.5:
                    out.append((t, w))
    return out


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def d_nano(nano: int) -> Decimal:
    return Decimal(nano) / NANO


def plain(d: Decimal) -> str:
    """``d`` in positional notation (never ``1.5E-7``)."""
    return format(d, "f")


def to_nano(usd: str) -> int:
    v = Decimal(usd) * NANO
    assert v == v.to_integral_value(), f"{usd!r} has more than 9 decimals"
    return int(v)


def this_month() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m")


def completed_body(stripe_fake, session_id: str, payment_status: str = "paid", event_id: str | None = None) -> bytes:
    return event_body(stripe_fake.completed_event(session_id, payment_status=payment_status, event_id=event_id))


def session_event(stripe_fake, typ: str, session_id: str, payment_status: str, status: str) -> bytes:
    obj = stripe_fake.paid_session(session_id, payment_status=payment_status, status=status)
    return event_body(stripe_fake.event(typ, obj))


# --------------------------------------------------------------------------
# Webhooks
# --------------------------------------------------------------------------


def test_valid_completed_event_credits_once(billing_gw, stripe_fake, signer, customers, admin):
    cust = customers("hook")
    t = cust.topup("12.50")
    assert cust.payment(t["session_id"])["status"] == "pending"
    body = completed_body(stripe_fake, t["session_id"])
    sig = signer.sign(body)

    assert_received(*deliver(billing_gw, body, sig))
    assert balance_nano(billing_gw, cust.id) == 12_500_000_000
    assert cust.balance_usd() == Decimal("12.50")
    assert Decimal(cust.json("GET", "/api/v1/me")["balance_usd"]) == Decimal("12.50")
    p = cust.payment(t["session_id"])
    assert p["status"] == "paid" and p["provider"] == "stripe" and Decimal(p["amount_usd"]) == Decimal("12.50"), p
    assert p["paid_at"] and p["receipt_url"], p
    entries = topup_entries(billing_gw, cust.id)
    assert [e["amount_nano"] for e in entries] == [12_500_000_000], entries
    verify_ledger(admin, cust.id)

    # The same delivery again (Stripe retries): acknowledged, nothing changes.
    before = snapshot(billing_gw, cust)
    assert_received(*deliver(billing_gw, body, sig))
    assert_received(*deliver(billing_gw, body, signer.sign(body)))
    assert snapshot(billing_gw, cust) == before
    verify_ledger(admin, cust.id)


def test_twenty_concurrent_deliveries_credit_once(billing_gw, stripe_fake, signer, customers, admin):
    cust = customers("burst")
    t = cust.topup(7)
    body = completed_body(stripe_fake, t["session_id"])
    sig = signer.sign(body)
    gate = threading.Barrier(20)

    def one(_):
        gate.wait(timeout=30)
        return deliver(billing_gw, body, sig)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    for status, payload in results:
        assert_received(status, payload)
    assert balance_nano(billing_gw, cust.id) == 7 * NANO
    assert len(topup_entries(billing_gw, cust.id)) == 1, topup_entries(billing_gw, cust.id)
    assert cust.payment(t["session_id"])["status"] == "paid"
    verify_ledger(admin, cust.id)


def test_distinct_events_for_one_session_credit_once_in_any_order(billing_gw, stripe_fake, signer, customers, admin):
    cust = customers("order")
    t = cust.topup("3.33")
    sid = t["session_id"]
    completed = completed_body(stripe_fake, sid)
    succeeded = session_event(stripe_fake, "checkout.session.async_payment_succeeded", sid, "paid", "complete")
    expired = session_event(stripe_fake, "checkout.session.expired", sid, "unpaid", "expired")
    s_completed, s_succeeded, s_expired = signer.sign_many(
        [(completed, None, None), (succeeded, None, None), (expired, None, None)]
    )

    assert_received(*deliver(billing_gw, completed, s_completed))
    assert balance_nano(billing_gw, cust.id) == 3_330_000_000
    # A second, distinct event for the same session: no second credit.
    assert_received(*deliver(billing_gw, succeeded, s_succeeded))
    assert balance_nano(billing_gw, cust.id) == 3_330_000_000
    # `expired` arriving after `completed` leaves the payment paid.
    assert_received(*deliver(billing_gw, expired, s_expired))
    assert cust.payment(sid)["status"] == "paid"
    assert balance_nano(billing_gw, cust.id) == 3_330_000_000
    assert len(topup_entries(billing_gw, cust.id)) == 1

    # 20 concurrent deliveries mixing distinct events of a second session: one credit.
    t2 = cust.topup("2.00")
    bodies = [completed_body(stripe_fake, t2["session_id"]) for _ in range(10)]
    bodies += [
        session_event(stripe_fake, "checkout.session.async_payment_succeeded", t2["session_id"], "paid", "complete")
        for _ in range(10)
    ]
    sigs = signer.sign_many([(b, None, None) for b in bodies])
    gate = threading.Barrier(len(bodies))

    def one(i):
        gate.wait(timeout=30)
        return deliver(billing_gw, bodies[i], sigs[i])

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        for status, payload in pool.map(one, range(len(bodies))):
            assert_received(status, payload)
    assert balance_nano(billing_gw, cust.id) == 5_330_000_000
    assert sorted(e["amount_nano"] for e in topup_entries(billing_gw, cust.id)) == [2 * NANO, 3_330_000_000]
    verify_ledger(admin, cust.id)


def test_bad_signatures_are_400_and_change_nothing(billing_gw, stripe_fake, signer, customers):
    cust = customers("forged")
    t = cust.topup("9.99")
    body = completed_body(stripe_fake, t["session_id"])
    now = int(time.time())
    tampered = body.replace(b'"amount_total": 999', b'"amount_total": 99900')
    assert tampered != body
    wrong_secret, stale, for_tamper, fresh_ago = signer.sign_many(
        [
            (body, "whsec_not_the_right_one", None),
            (body, None, now - 600),  # 10 minutes old
            (body, None, now),
            (body, None, now - 240),  # 4 minutes old: still inside the tolerance
        ]
    )
    good_v1 = dict(p.split("=", 1) for p in for_tamper.split(","))["v1"]
    before = snapshot(billing_gw, cust)
    cases = {
        "wrong secret": (body, wrong_secret),
        "stale timestamp": (body, stale),
        "tampered body": (tampered, for_tamper),
        "missing header": (body, None),
        "empty header": (body, ""),
        "garbage header": (body, "not a signature"),
        "no v1 scheme": (body, f"t={now},v0={good_v1}"),
        "non-numeric timestamp": (body, f"t=abc,v1={good_v1}"),
        "signature of another timestamp": (body, f"t={now + 1},v1={good_v1}"),
    }
    for name, (b, sig) in cases.items():
        status, payload = deliver(billing_gw, b, sig)
        assert status == 400, f"{name}: {status} {payload}"
        assert snapshot(billing_gw, cust) == before, name

    # Validly signed but not JSON: 400, nothing changes.
    junk = b'{"id": "evt_1", "type": "checkout.session.completed", "data": '
    status, payload = deliver(billing_gw, junk, signer.sign(junk))
    assert status == 400, (status, payload)
    assert snapshot(billing_gw, cust) == before

    # The genuine delivery, signed 4 minutes ago, still credits: the session was creditable.
    assert_received(*deliver(billing_gw, body, fresh_ago))
    assert balance_nano(billing_gw, cust.id) == 9_990_000_000


def test_signature_header_with_several_schemes_and_secrets(billing_gw, stripe_fake, signer, customers):
    """Stripe sends one ``v1`` per active secret while a secret is rolled, and a ``v0``
    in test mode: any matching ``v1`` must verify."""
    cust = customers("roll")
    t = cust.topup(4)
    body = completed_body(stripe_fake, t["session_id"])
    now = int(time.time())
    other, good = signer.sign_many([(body, "whsec_old_secret", now), (body, None, now)])
    v1_other = other.split("v1=", 1)[1]
    v1_good = good.split("v1=", 1)[1]
    header = f"t={now},v1={v1_other},v1={v1_good},v0={'0' * 64}"
    assert_received(*deliver(billing_gw, body, header))
    assert balance_nano(billing_gw, cust.id) == 4 * NANO


def test_unknown_provider_is_404(billing_gw, stripe_fake, signer, customers):
    cust = customers("paypal")
    t = cust.topup(5)
    body = completed_body(stripe_fake, t["session_id"])
    before = snapshot(billing_gw, cust)
    for provider in ("paypal", "Stripe", "stripe-x"):
        status, payload = deliver(billing_gw, body, signer.sign(body), provider=provider)
        assert status == 404, (provider, status, payload)
    assert snapshot(billing_gw, cust) == before


def test_unhandled_event_type_is_acknowledged_and_ignored(billing_gw, stripe_fake, signer, customers):
    cust = customers("other")
    t = cust.topup(5)
    before = snapshot(billing_gw, cust)
    customer_created = event_body(
        stripe_fake.event(
            "customer.created",
            {"id": "cus_" + secrets.token_hex(7), "object": "customer", "email": cust.email, "metadata": {}},
        )
    )
    # A payment event tokengate does not act on, carrying the session's ids.
    pi = event_body(
        stripe_fake.event(
            "payment_intent.succeeded",
            {
                "id": "pi_" + secrets.token_hex(12),
                "object": "payment_intent",
                "amount": 500,
                "amount_received": 500,
                "currency": "usd",
                "status": "succeeded",
                "metadata": {"user_id": str(cust.id)},
            },
        )
    )
    for b in (customer_created, pi):
        status, payload = deliver(billing_gw, b, signer.sign(b))
        assert status == 200, (status, payload)
    assert snapshot(billing_gw, cust) == before
    assert cust.payment(t["session_id"])["status"] == "pending"


def test_unpaid_completion_then_async_success_credits(billing_gw, stripe_fake, signer, customers, admin):
    cust = customers("async")
    t = cust.topup("6.25")
    sid = t["session_id"]
    unpaid = completed_body(stripe_fake, sid, payment_status="unpaid")
    assert_received(*deliver(billing_gw, unpaid, signer.sign(unpaid)))
    assert balance_nano(billing_gw, cust.id) == 0
    assert cust.payment(sid)["status"] == "pending"
    assert cust.request("GET", f"/api/v1/me/billing/payments/{cust.payment(sid)['id']}/receipt.pdf").status_code == 404

    succeeded = session_event(stripe_fake, "checkout.session.async_payment_succeeded", sid, "paid", "complete")
    assert_received(*deliver(billing_gw, succeeded, signer.sign(succeeded)))
    assert balance_nano(billing_gw, cust.id) == 6_250_000_000
    assert cust.payment(sid)["status"] == "paid"
    verify_ledger(admin, cust.id)


def test_async_failure_and_expiry_mark_the_payment(billing_gw, stripe_fake, signer, customers):
    cust = customers("fail")
    failed_t = cust.topup(8)
    expired_t = cust.topup(9)
    unpaid = completed_body(stripe_fake, failed_t["session_id"], payment_status="unpaid")
    failed = session_event(
        stripe_fake, "checkout.session.async_payment_failed", failed_t["session_id"], "unpaid", "complete"
    )
    expired = session_event(stripe_fake, "checkout.session.expired", expired_t["session_id"], "unpaid", "expired")
    for b in (unpaid, failed, expired):
        assert_received(*deliver(billing_gw, b, signer.sign(b)))
    by_session = {p["session_id"]: p for p in cust.payments()}
    assert by_session[failed_t["session_id"]]["status"] == "failed", by_session
    assert by_session[expired_t["session_id"]]["status"] == "expired", by_session
    for p in by_session.values():
        assert not p.get("receipt_url"), p
        r = cust.request("GET", f"/api/v1/me/billing/payments/{p['id']}/receipt.pdf")
        assert r.status_code == 404, r.status_code
    assert balance_nano(billing_gw, cust.id) == 0
    assert ledger(billing_gw, cust.id) == []


def test_completed_event_for_a_session_this_server_never_created_credits_nothing(
    billing_gw, stripe_fake, signer, customers, admin
):
    """Acknowledged (200, so Stripe stops retrying) and logged, but no credit and no
    payment row, even though it names a real account."""
    cust = customers("noref")
    sid = new_session_id()
    body = event_body(stripe_fake.event("checkout.session.completed", session_object(sid, 1234, cust.id)))
    sig = signer.sign(body)
    for expected in ("unknown_payment", "duplicate"):
        status, payload = deliver(billing_gw, body, sig)
        assert_received(status, payload)
        assert payload["result"] == expected, payload
    assert balance_nano(billing_gw, cust.id) == 0
    assert ledger(billing_gw, cust.id) == [] and cust.payments() == []
    verify_ledger(admin, cust.id)


def test_an_event_that_disagrees_with_the_stored_session_credits_nothing(
    billing_gw, stripe_fake, signer, customers, admin
):
    """Account, amount and currency of a paid event must equal what tokengate stored when
    it created the session; otherwise nobody is credited and the payment stays pending."""
    payer = customers("payer")
    other = customers("bystander")
    t = payer.topup("2.50")
    sid = t["session_id"]

    def variant(**changes) -> bytes:
        ev = stripe_fake.completed_event(sid)
        ev["data"]["object"].update(changes)
        return event_body(ev)

    bodies = [
        variant(client_reference_id=str(other.id), metadata={"user_id": str(other.id)}),
        variant(amount_total=25_000, amount_subtotal=25_000),
        variant(currency="eur"),
    ]
    for body, sig in zip(bodies, signer.sign_many([(b, None, None) for b in bodies])):
        status, payload = deliver(billing_gw, body, sig)
        assert_received(status, payload)
        assert payload["result"] == "mismatch", payload
    assert balance_nano(billing_gw, payer.id) == 0 and ledger(billing_gw, payer.id) == []
    assert balance_nano(billing_gw, other.id) == 0 and ledger(billing_gw, other.id) == []
    assert payer.payment(sid)["status"] == "pending" and other.payments() == []
    # The genuine event still credits.
    body = completed_body(stripe_fake, sid)
    assert_received(*deliver(billing_gw, body, signer.sign(body)))
    assert balance_nano(billing_gw, payer.id) == 2_500_000_000
    verify_ledger(admin)


def test_refunds_and_disputes_debit_and_show_on_the_statement(billing_gw, stripe_fake, signer, customers, admin):
    """``charge.refunded`` debits the newly refunded part (partial refunds twice, a replay
    once), ``charge.dispute.created`` the disputed amount, below zero if need be; the
    gateway refuses requests at once; the statement shows both in JSON, CSV and PDF."""
    cust = customers("refund")
    key = cust.new_key("refund")["raw"]
    t = cust.topup("10.00")
    body = completed_body(stripe_fake, t["session_id"])
    assert_received(*deliver(billing_gw, body, signer.sign(body)))
    assert balance_nano(billing_gw, cust.id) == 10 * NANO

    first = event_body(stripe_fake.refunded_event(t["session_id"], 300))
    second = event_body(stripe_fake.refunded_event(t["session_id"], 700))
    s1, s2 = signer.sign_many([(first, None, None), (second, None, None)])
    for body, sig, expected, balance in [
        (first, s1, "refunded", 7 * NANO),
        (second, s2, "refunded", 3 * NANO),
        (second, s2, "duplicate", 3 * NANO),  # Stripe retries: once only
        (first, s1, "duplicate", 3 * NANO),
    ]:
        status, payload = deliver(billing_gw, body, sig)
        assert_received(status, payload)
        assert payload["result"] == expected, payload
        assert balance_nano(billing_gw, cust.id) == balance

    # A dispute of a second top-up after most of the money was spent: the balance goes
    # negative and the next request is refused at once.
    t2 = cust.topup("4.00")
    body = completed_body(stripe_fake, t2["session_id"])
    assert_received(*deliver(billing_gw, body, signer.sign(body)))
    assert balance_nano(billing_gw, cust.id) == 7 * NANO
    r = admin.post(
        f"/api/v1/admin/users/{cust.id}/credit",
        json={"amount_usd": "-6.00", "reason": "stands for spent credit", "kind": "adjustment"},
    )
    assert r.status_code == 200, r.text[:300]
    dispute = event_body(stripe_fake.dispute_created_event(t2["session_id"]))
    status, payload = deliver(billing_gw, dispute, signer.sign(dispute))
    assert_received(status, payload)
    assert payload["result"] == "disputed", payload
    assert balance_nano(billing_gw, cust.id) == -3 * NANO
    assert cust.balance_usd() == Decimal("-3.00")
    status, _, raw = chat(billing_gw, key, "fake/gpt-test", "hello")
    assert status == 402, (status, raw[:300])
    verify_ledger(admin, cust.id)

    st = cust.statement(this_month())
    assert_statement_consistent(st)
    assert st["closing_balance_nano"] == -3 * NANO
    taken = [(c["kind"], c["amount_usd"]) for c in st["credits"] if c["kind"] in ("refund", "dispute")]
    assert taken == [("refund", "-3.00"), ("refund", "-4.00"), ("dispute", "-4.00")], st["credits"]
    notes = {c["kind"]: c["note"] for c in st["credits"]}
    assert t["session_id"] in notes["refund"] and notes["refund"].startswith("Refund"), notes
    assert t2["session_id"] in notes["dispute"] and "chargeback" in notes["dispute"], notes
    r = cust.request("GET", "/api/v1/me/billing/statement.csv", params={"month": this_month()})
    rows = check_statement_csv(r.text, st)
    assert [x["kind"] for x in rows if x["kind"] in ("refund", "dispute")] == ["refund", "refund", "dispute"]
    r = cust.request("GET", "/api/v1/me/billing/statement.pdf", params={"month": this_month()})
    text = pdf_text(r.content)
    check_statement_pdf(text, st, cust.email)
    # Notes wrap inside their column: look for words, not phrases.
    assert "dispute" in text and "chargeback" in text and "Refund" in text, text


# --------------------------------------------------------------------------
# Top-up against the fake Stripe
# --------------------------------------------------------------------------


def test_topup_flow_against_fake_stripe(billing_gw, stripe_fake, signer, customers, admin):
    cust = customers("topup")
    n_before = len(stripe_fake.created_sessions())
    t = cust.topup("12.5")
    created = stripe_fake.created_sessions()
    assert len(created) == n_before + 1
    rec = created[-1]
    f = rec.form
    assert rec.headers["authorization"] == f"Bearer {STRIPE_SECRET_KEY}"
    assert rec.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"), rec.headers
    assert f["mode"] == "payment", f
    assert f["line_items[0][price_data][currency]"] == "usd", f
    assert f["line_items[0][price_data][unit_amount]"] == "1250", f
    assert f["line_items[0][quantity]"] == "1", f
    assert f["line_items[0][price_data][product_data][name]"].strip(), f
    assert f["client_reference_id"] == str(cust.id), f
    assert f["metadata[user_id]"] == str(cust.id), f
    assert f["success_url"] == f"{billing_gw.url}/me/billing?checkout=success&session_id={{CHECKOUT_SESSION_ID}}", f
    assert f["cancel_url"] == f"{billing_gw.url}/me/billing?checkout=cancel", f
    assert not any(k.startswith("line_items[1]") for k in f), f

    session = stripe_fake.session(t["session_id"])
    assert t["checkout_url"] == session["url"], (t, session)
    # Times are RFC 3339 in UTC (the provider gives unix seconds).
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(session["expires_at"]))
    assert t["amount_usd"] == "12.50" and t["expires_at"] == expires, t
    assert isinstance(t["payment_id"], int), t

    p = cust.payment(t["session_id"])
    assert p["id"] == t["payment_id"] and p["status"] == "pending" and p["provider"] == "stripe", p
    assert Decimal(p["amount_usd"]) == Decimal("12.50") and not p.get("receipt_url") and not p.get("paid_at"), p
    receipt_path = f"/api/v1/me/billing/payments/{t['payment_id']}/receipt.pdf"
    assert cust.request("GET", receipt_path).status_code == 404
    assert balance_nano(billing_gw, cust.id) == 0

    body = completed_body(stripe_fake, t["session_id"])
    assert_received(*deliver(billing_gw, body, signer.sign(body)))
    assert cust.balance_usd() == Decimal("12.50")
    p = cust.payment(t["session_id"])
    assert p["status"] == "paid" and p["receipt_url"], p
    assert p["receipt_url"].endswith(receipt_path), p
    entries = ledger(billing_gw, cust.id)
    assert [(e["kind"], e["amount_nano"]) for e in entries] == [("topup", 12_500_000_000)], entries
    verify_ledger(admin, cust.id)

    r = cust.request("GET", receipt_path)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("application/pdf"), r.headers
    text = pdf_text(r.content)
    assert "12.50" in text, text
    assert t["session_id"] in squash(text), text
    assert cust.email in squash(text), text

    # Someone else's receipt is not served.
    other = customers("nosy")
    assert other.request("GET", receipt_path).status_code in (403, 404)

    # A number works as well as a string.
    t2 = cust.topup(5)
    assert t2["amount_usd"] == "5.00"
    assert stripe_fake.created_sessions()[-1].form["line_items[0][price_data][unit_amount]"] == "500"
    assert t2["session_id"] != t["session_id"]


def test_topup_validation(billing_gw, stripe_fake, customers):
    cust = customers("invalid")
    n_before = len(stripe_fake.created_sessions())
    for amount in (
        "0.5",
        0.5,
        "abc",
        "",
        0,
        "0",
        -5,
        "-5",
        TOPUP_MAX_USD + 1,
        str(TOPUP_MAX_USD + 0.01),
        "1.234",
        1.234,
        "1e3",
        None,
        True,
        [5],
        "99999999999999999999999",
        "NaN",
        "inf",
        1e308,
        "5,00",
        "5 USD",
    ):
        r = cust.request("POST", "/api/v1/topup", json={"amount_usd": amount})
        assert_api_error(r)
    assert_api_error(cust.request("POST", "/api/v1/topup", json={}))
    assert len(stripe_fake.created_sessions()) == n_before, "invalid top-ups reached Stripe"
    assert cust.payments() == []
    # The edges themselves are accepted.
    assert cust.topup("1")["amount_usd"] == "1.00"
    assert cust.topup(TOPUP_MAX_USD)["amount_usd"] == f"{TOPUP_MAX_USD}.00"


def test_topup_requires_a_signed_in_user(billing_gw):
    status, _, raw = raw_post(f"{billing_gw.url}/api/v1/topup", {"amount_usd": "5"})
    assert status == 401, (status, raw[:300])


def test_topup_when_stripe_fails_records_nothing(billing_gw, stripe_fake, customers):
    cust = customers("stripedown")
    stripe_fake.fail_next(500)
    r = cust.request("POST", "/api/v1/topup", json={"amount_usd": "5"})
    assert_api_error(r, statuses=(500, 502, 503))
    assert cust.payments() == []
    # Stripe answering again, the next attempt works.
    assert cust.topup("5")["amount_usd"] == "5.00"
    assert [p["status"] for p in cust.payments()] == ["pending"]


def test_topup_without_stripe_configured_is_503(gateway):
    token = admin_token(gateway)
    status, _, raw = raw_post(
        f"{gateway.url}/api/v1/topup", {"amount_usd": "5.0"}, {"Authorization": f"Bearer {token}"}
    )
    assert status == 503, (status, raw[:300])
    err = json.loads(raw)["error"]
    assert err["code"] == "payments_unavailable" and err["message"] and err["type"], err


# --------------------------------------------------------------------------
# Statements and exports
# --------------------------------------------------------------------------


def expected_cost_nano(model: str, tokens_in: int, tokens_out: int) -> int:
    inp, out = (to_nano(p) for p in PRICES[model])
    return (tokens_in * inp + tokens_out * out + 500_000) // 1_000_000  # round half up


def chat(gw, key: str, model: str, prompt: str):
    return raw_post(
        f"{gw.url}/v1/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": prompt}]},
        {"Authorization": f"Bearer {key}"},
    )


def parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def month_bounds(month: str) -> tuple[str, str]:
    start = datetime.strptime(month + "-01", "%Y-%m-%d")
    nxt = (start + timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m-%d"), nxt.strftime("%Y-%m-%d")


def pdf_amount(text: str, label: str) -> Decimal:
    """The last amount on the first line of ``text`` that contains ``label`` and an amount."""
    amount = re.compile(r"(-?)\s*(?:US)?\$?\s*(-?)(\d[\d,]*\.\d+)")
    lines = [ln for ln in text.splitlines() if label.lower() in ln.lower() and amount.search(ln)]
    assert lines, f"no line with {label!r} and an amount in the PDF:\n{text}"
    sign1, sign2, digits = amount.findall(lines[0])[-1]
    value = Decimal(digits.replace(",", ""))
    return -value if (sign1 or sign2) else value


def assert_statement_consistent(st: dict) -> None:
    for name in ("opening_balance", "closing_balance", "topups", "adjustments", "usage", "net_change"):
        nano = st[f"{name}_nano"]
        assert isinstance(nano, int), (name, st)
        assert Decimal(st[f"{name}_usd"]) == d_nano(nano), (name, st[f"{name}_usd"], nano)
    assert st["closing_balance_nano"] == (
        st["opening_balance_nano"] + st["topups_nano"] + st["adjustments_nano"] - st["usage_nano"]
    ), st
    assert st["net_change_nano"] == st["closing_balance_nano"] - st["opening_balance_nano"], st
    assert st["usage_nano"] == sum(m["cost_nano"] for m in st["usage_by_model"]), st
    for m in st["usage_by_model"]:
        assert Decimal(m["cost_usd"]) == d_nano(m["cost_nano"]), m
    credits = st["credits"]
    assert sum(c["amount_nano"] for c in credits if c["kind"] == "topup") == st["topups_nano"], credits
    assert sum(c["amount_nano"] for c in credits if c["kind"] != "topup") == st["adjustments_nano"], credits
    for c in credits:
        assert Decimal(c["amount_usd"]) == d_nano(c["amount_nano"]), c


def check_statement_csv(text: str, st: dict) -> list[dict]:
    rows = parse_csv(text)
    assert rows[0] == STATEMENT_CSV_HEADER, rows[0]
    body = [dict(zip(STATEMENT_CSV_HEADER, r)) for r in rows[1:] if r]
    for r in rows[1:]:
        assert len(r) == len(STATEMENT_CSV_HEADER), r
    assert body[0]["kind"] == "opening_balance" and body[-1]["kind"] == "closing_balance", body
    activity = body[1:-1]
    assert all(r["kind"] in ("topup", "adjustment", "refund", "promo", "dispute", "usage") for r in activity), activity
    for r in body:
        assert EXACT_AMOUNT.match(r["amount_usd"]), r
    opening = Decimal(body[0]["amount_usd"])
    closing = Decimal(body[-1]["amount_usd"])
    total = sum((Decimal(r["amount_usd"]) for r in activity), Decimal(0))
    assert opening == d_nano(st["opening_balance_nano"]), (opening, st)
    assert closing == d_nano(st["closing_balance_nano"]), (closing, st)
    assert opening + total == closing, (opening, total, closing)
    assert total == d_nano(st["net_change_nano"])
    usage_rows = [r for r in activity if r["kind"] == "usage"]
    assert -sum((Decimal(r["amount_usd"]) for r in usage_rows), Decimal(0)) == d_nano(st["usage_nano"])
    assert sum((Decimal(r["amount_usd"]) for r in activity if r["kind"] == "topup"), Decimal(0)) == d_nano(
        st["topups_nano"]
    )
    assert sum(
        (Decimal(r["amount_usd"]) for r in activity if r["kind"] in ("adjustment", "refund", "promo", "dispute")),
        Decimal(0),
    ) == d_nano(st["adjustments_nano"])
    # Usage rows by model agree with usage_by_model (requests, tokens, cost).
    by_model: dict[str, list] = {}
    for r in usage_rows:
        agg = by_model.setdefault(r["model"], [0, 0, 0, Decimal(0)])
        agg[0] += int(r["requests"])
        agg[1] += int(r["tokens_in"])
        agg[2] += int(r["tokens_out"])
        agg[3] -= Decimal(r["amount_usd"])
    expected = {
        m["model"]: [m["requests"], m["tokens_in"], m["tokens_out"], d_nano(m["cost_nano"])]
        for m in st["usage_by_model"]
    }
    assert by_model == expected, (by_model, expected)
    # Ledger lines agree with the JSON credits, in amounts and kinds.
    assert sorted((r["kind"], Decimal(r["amount_usd"])) for r in activity if r["kind"] != "usage") == sorted(
        (c["kind"], d_nano(c["amount_nano"])) for c in st["credits"]
    )
    return body


def check_statement_pdf(text: str, st: dict, email: str) -> None:
    assert pdf_amount(text, "Opening balance") == d_nano(st["opening_balance_nano"]), text
    assert pdf_amount(text, "Closing balance") == d_nano(st["closing_balance_nano"]), text
    assert abs(pdf_amount(text, "Total usage")) == d_nano(st["usage_nano"]), text
    assert email in squash(text), text
    for c in st["credits"]:
        assert c["amount_usd"] in text, (c, text)
    assert st["month"] in text or datetime.strptime(st["month"], "%Y-%m").strftime("%B %Y") in text, text
    # Every model's exact cost is printed.
    for m in st["usage_by_model"]:
        assert m["model"] in text, (m, text)
        assert plain(d_nano(m["cost_nano"])) in text, (m, plain(d_nano(m["cost_nano"])), text)


def request_logs_csv(cust: Customer, **params) -> list[dict]:
    r = cust.request("GET", "/api/v1/me/request-logs.csv", params=params)
    assert r.status_code == 200, (params, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/csv"), r.headers
    # Streamed, not built in memory first: chunked, no Content-Length.
    assert r.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.headers, r.headers
    rows = parse_csv(r.text)
    assert rows and rows[0] == LOGS_CSV_HEADER, rows[:1]
    for row in rows[1:]:
        assert len(row) == len(LOGS_CSV_HEADER), row
    return [dict(zip(LOGS_CSV_HEADER, row)) for row in rows[1:]]


def test_statement_reconciles_json_csv_pdf_and_ledger(billing_gw, stripe_fake, signer, customers, admin):
    cust = customers("recon")
    month = this_month()

    # Money in: a Stripe top-up and admin credit of every kind (with reasons).
    t = cust.topup("20")
    body = completed_body(stripe_fake, t["session_id"])
    assert_received(*deliver(billing_gw, body, signer.sign(body)))
    credits = [("3.50", "adjustment", "goodwill for the outage"), ("1.00", "promo", "launch promo")]
    for amount, kind, reason in credits:
        r = admin.post(
            f"/api/v1/admin/users/{cust.id}/credit", json={"amount_usd": amount, "kind": kind, "reason": reason}
        )
        assert r.status_code == 200, r.text[:500]

    # Traffic: three keys (one with a comma and quotes, one a spreadsheet formula), four
    # models (one always fails upstream).
    k_plain = cust.new_key("plain-key")
    k_quote = cust.new_key('team "alpha", billing')
    k_formula = cust.new_key('=HYPERLINK("x")')
    calls = [
        (k_plain, "fake/gpt-test", "Say hello to the gateway please"),  # 6 words
        (k_plain, "fake/gpt-test", "One two three"),
        (k_quote, "fake/gpt-odd", "Count the cost of this odd request exactly"),
        (k_quote, "fake/gpt-odd", "Another odd one"),
        (k_formula, "fake/gpt-big", "A big model answers this"),
        (k_formula, "fake/gpt-fail", "This upstream always fails"),
    ]
    expected_cost = 0
    ok_calls = 0
    for key, model, prompt in calls:
        status, _, raw = chat(billing_gw, key["raw"], model, prompt)
        if model == "fake/gpt-fail":
            assert status >= 500, (status, raw[:300])
            continue
        assert status == 200, (model, status, raw[:500])
        usage = json.loads(raw)["usage"]
        assert usage["prompt_tokens"] == len(prompt.split()) and usage["completion_tokens"] == COMPLETION_TOKENS
        expected_cost += expected_cost_nano(model, usage["prompt_tokens"], usage["completion_tokens"])
        ok_calls += 1

    # A negative adjustment and a refund after the traffic.
    for amount, kind, reason in (
        ("-1.50", "adjustment", "duplicate promo"),
        ("0.25", "refund", 'refund for "slow" answers, sorry'),
    ):
        r = admin.post(
            f"/api/v1/admin/users/{cust.id}/credit", json={"amount_usd": amount, "kind": kind, "reason": reason}
        )
        assert r.status_code == 200, r.text[:500]
        credits.append((amount, kind, reason))

    credit_total = sum(to_nano(a) for a, _, _ in credits)
    expected_balance = 20 * NANO + credit_total - expected_cost
    assert poll(lambda: balance_nano(billing_gw, cust.id) == expected_balance, timeout=10), (
        balance_nano(billing_gw, cust.id),
        expected_balance,
    )
    logs = poll(
        lambda: (
            d
            if len(d := cust.json("GET", "/api/v1/me/request-logs", params={"limit": 100})["data"]) >= len(calls)
            else None
        )
    )
    assert logs and len(logs) == len(calls), logs
    verify_ledger(admin, cust.id)
    assert sum(e["amount_nano"] for e in ledger(billing_gw, cust.id)) == expected_balance

    # JSON statement.
    st = cust.statement(month)
    assert st["month"] == month
    assert_statement_consistent(st)
    assert st["opening_balance_nano"] == 0
    assert st["closing_balance_nano"] == expected_balance
    assert st["topups_nano"] == 20 * NANO
    assert st["adjustments_nano"] == credit_total
    assert st["usage_nano"] == expected_cost
    assert {m["model"] for m in st["usage_by_model"]} >= {"fake/gpt-test", "fake/gpt-odd", "fake/gpt-big"}
    assert sum(m["requests"] for m in st["usage_by_model"] if m["cost_nano"]) == ok_calls
    notes = {(c["kind"], c["amount_nano"]): c["note"] for c in st["credits"]}
    for amount, kind, reason in credits:
        assert notes.get((kind, to_nano(amount))) == reason, (kind, amount, notes)

    # CSV statement.
    r = cust.request("GET", "/api/v1/me/billing/statement.csv", params={"month": month})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), (r.status_code, r.headers)
    rows = check_statement_csv(r.text, st)
    for amount, kind, reason in credits:
        assert any(
            x["kind"] == kind and Decimal(x["amount_usd"]) == Decimal(amount) and reason in x["description"]
            for x in rows
        ), (
            kind,
            reason,
            rows,
        )

    # PDF statement, read back with pdftotext.
    r = cust.request("GET", "/api/v1/me/billing/statement.pdf", params={"month": month})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/pdf"), (r.status_code, r.headers)
    check_statement_pdf(pdf_text(r.content), st, cust.email)

    # Request-log CSV for the month: Σ cost = statement usage, one row per request.
    start, end = month_bounds(month)
    log_rows = request_logs_csv(cust, **{"from": start, "to": end})
    assert len(log_rows) == len(calls), log_rows
    assert sum((Decimal(x["cost_usd"]) for x in log_rows), Decimal(0)) == d_nano(st["usage_nano"])
    for x in log_rows:
        assert EXACT_AMOUNT.match(x["cost_usd"]), x
    json_costs = sorted(d_nano(x["cost_nano"]) if "cost_nano" in x else Decimal(x["cost_usd"]) for x in logs)
    assert sorted(Decimal(x["cost_usd"]) for x in log_rows) == json_costs

    # Key names: RFC 4180 quoting survives the round trip; formulas are neutralised.
    names = {x["key_id"]: x["key_name"] for x in log_rows}
    assert names[str(k_plain["id"])] == "plain-key"
    assert names[str(k_quote["id"])] == 'team "alpha", billing'
    assert names[str(k_formula["id"])] == '\'=HYPERLINK("x")', names
    raw_csv = cust.request("GET", "/api/v1/me/request-logs.csv", params={"from": start, "to": end}).text
    assert '"team ""alpha"", billing"' in raw_csv
    assert not re.search(r'(^|,)"?=HYPERLINK', raw_csv, re.M), raw_csv

    # Filters.
    def count(**params) -> int:
        return len(request_logs_csv(cust, **params))

    assert count(model="fake/gpt-odd") == 2
    assert {x["key_name"] for x in request_logs_csv(cust, model="fake/gpt-odd")} == {'team "alpha", billing'}
    assert count(model="fake/gpt-test") == 2
    assert count(status="2xx") == ok_calls
    assert all(x["status"].startswith("2") for x in request_logs_csv(cust, status="2xx"))
    assert count(status="5xx") == len(calls) - ok_calls
    assert count(key_id=k_formula["id"]) == 2
    assert count(key_id=k_formula["id"], status="2xx") == 1
    assert count(key_id=k_plain["id"], model="fake/gpt-odd") == 0
    now = datetime.now(timezone.utc)
    rfc = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    assert count(**{"from": rfc(now - timedelta(hours=1)), "to": rfc(now + timedelta(hours=1))}) == len(calls)
    assert count(**{"from": rfc(now + timedelta(hours=1))}) == 0
    assert count(**{"to": "2020-01-01"}) == 0
    # The JSON listing filters the same way and pages with next_before.
    page = cust.json("GET", "/api/v1/me/request-logs", params={"model": "fake/gpt-odd", "limit": 100})
    assert len(page["data"]) == 2 and page["next_before"] is None, page
    seen, before = [], None
    for _ in range(10):
        params = {"limit": 2}
        if before is not None:
            params["before"] = before
        page = cust.json("GET", "/api/v1/me/request-logs", params=params)
        seen += [x["request_id"] for x in page["data"]]
        before = page["next_before"]
        if before is None:
            break
    assert sorted(seen) == sorted(x["request_id"] for x in log_rows), (seen, log_rows)
    assert_api_error(cust.request("GET", "/api/v1/me/request-logs", params={"status": "abc"}))

    # A month without activity: opening = closing, no lines.
    empty = cust.statement("2020-01")
    assert_statement_consistent(empty)
    assert empty["opening_balance_nano"] == empty["closing_balance_nano"] == 0
    assert empty["credits"] == [] and empty["usage_by_model"] == [] and empty["usage_nano"] == 0
    r = cust.request("GET", "/api/v1/me/billing/statement.csv", params={"month": "2020-01"})
    assert r.status_code == 200
    assert [x["kind"] for x in check_statement_csv(r.text, empty)] == ["opening_balance", "closing_balance"]
    r = cust.request("GET", "/api/v1/me/billing/statement.pdf", params={"month": "2020-01"})
    assert r.status_code == 200
    check_statement_pdf(pdf_text(r.content), empty, cust.email)
    for bad in ("2026-13", "2026/01", "x", ""):
        assert_api_error(cust.request("GET", "/api/v1/me/billing/statement", params={"month": bad}))


def test_statement_of_a_quiet_month_after_activity(billing_gw, stripe_fake, signer, customers):
    """The month before this one, for an account created this month, and this month for
    an account whose only activity is a credit: exact, consistent, and the same in the
    three formats."""
    cust = customers("quiet")
    body = completed_body(stripe_fake, cust.topup("1.01")["session_id"])
    assert_received(*deliver(billing_gw, body, signer.sign(body)))
    now = datetime.now(timezone.utc)
    previous = (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    before = cust.statement(previous)
    assert_statement_consistent(before)
    assert before["opening_balance_nano"] == before["closing_balance_nano"] == 0
    st = cust.statement(this_month())
    assert_statement_consistent(st)
    assert st["closing_balance_nano"] == st["topups_nano"] == 1_010_000_000 and st["usage_nano"] == 0
    r = cust.request("GET", "/api/v1/me/billing/statement.csv", params={"month": this_month()})
    kinds = [x["kind"] for x in check_statement_csv(r.text, st)]
    assert kinds == ["opening_balance", "topup", "closing_balance"], kinds
    r = cust.request("GET", "/api/v1/me/billing/statement.pdf", params={"month": this_month()})
    text = pdf_text(r.content)
    check_statement_pdf(text, st, cust.email)
    assert "1.01" in text
    # Next month (no activity yet) carries the balance: opening = closing = balance.
    nxt = (now.replace(day=1) + timedelta(days=32)).strftime("%Y-%m")
    after = cust.statement(nxt)
    assert_statement_consistent(after)
    assert after["opening_balance_nano"] == after["closing_balance_nano"] == 1_010_000_000
    assert after["credits"] == [] and after["usage_by_model"] == []
    r = cust.request("GET", "/api/v1/me/billing/statement.csv", params={"month": nxt})
    assert [x["kind"] for x in check_statement_csv(r.text, after)] == ["opening_balance", "closing_balance"]


def test_statement_and_receipt_pdfs_draw_no_text_over_text(billing_gw, stripe_fake, signer, customers, admin):
    """Long cells (a Stripe session id as the top-up reference, a long adjustment reason)
    stay inside their column: no word of the PDF is drawn over another."""
    cust = customers("layout")
    t = cust.topup("42.00")
    body = completed_body(stripe_fake, t["session_id"])
    assert_received(*deliver(billing_gw, body, signer.sign(body)))
    reason = (
        "Credit for the incident of the 14th: requests to the EU region timed out for forty minutes, see ticket 4711"
    )
    r = admin.post(
        f"/api/v1/admin/users/{cust.id}/credit", json={"amount_usd": "1.25", "kind": "adjustment", "reason": reason}
    )
    assert r.status_code == 200, r.text
    key = cust.new_key("layout-key")
    status, _, raw = chat(billing_gw, key["raw"], "fake/gpt-odd", "a few words for the layout check")
    assert status == 200, raw[:300]
    assert poll(lambda: cust.statement(this_month())["usage_nano"] > 0), "usage never reached the statement"
    statement = cust.request("GET", "/api/v1/me/billing/statement.pdf", params={"month": this_month()})
    assert statement.status_code == 200
    receipt = cust.request("GET", f"/api/v1/me/billing/payments/{t['payment_id']}/receipt.pdf")
    assert receipt.status_code == 200
    assert pdf_overlaps(statement.content) == [], pdf_text(statement.content)
    assert pdf_overlaps(receipt.content) == [], pdf_text(receipt.content)


# --------------------------------------------------------------------------
# Admin credit
# --------------------------------------------------------------------------


def test_admin_credit_rules(billing_gw, customers, admin):
    cust = customers("credit")
    path = f"/api/v1/admin/users/{cust.id}/credit"
    for body in (
        {"amount_usd": "2.00", "kind": "adjustment"},
        {"amount_usd": "2.00", "kind": "adjustment", "reason": ""},
        {"amount_usd": "2.00", "kind": "adjustment", "reason": "   "},
        {"amount_usd": "2.00", "kind": "topup", "reason": "not a credit kind"},
        {"amount_usd": "2.00", "kind": "usage", "reason": "not a credit kind"},
        {"amount_usd": "abc", "kind": "promo", "reason": "bad amount"},
        {"amount_usd": "0", "kind": "promo", "reason": "nothing"},
        {"amount_usd": "1.0000000001", "kind": "promo", "reason": "below a nano-dollar"},
        {"kind": "promo", "reason": "no amount"},
        {"amount_usd": "99999999999999999999999", "kind": "promo", "reason": "overflow"},
        {"amount_usd": "-9223372036.854775808", "kind": "adjustment", "reason": "overflow"},
    ):
        assert_api_error(admin.post(path, json=body))
    assert ledger(billing_gw, cust.id) == []

    # Not an administrator (a customer's own session): 403; nobody signed in: 401.
    r = cust.request("POST", path, json={"amount_usd": "100", "kind": "promo", "reason": "free money"})
    assert_api_error(r, statuses=(403,))
    assert cust.request("GET", "/api/v1/admin/ledger/verify").status_code == 403
    assert (
        httpx.post(f"{billing_gw.url}{path}", json={"amount_usd": "1", "kind": "promo", "reason": "x"}).status_code
        == 401
    )
    assert ledger(billing_gw, cust.id) == []

    # Unknown account: 404.
    assert_api_error(
        admin.post("/api/v1/admin/users/987654321/credit", json={"amount_usd": "1", "kind": "promo", "reason": "x"}),
        statuses=(404,),
    )

    # Valid credits, recorded with the reason and the admin's id.
    me = admin.get("/api/v1/me").json()
    r = admin.post(path, json={"amount_usd": "2.50", "kind": "promo", "reason": "welcome"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["user_id"] == cust.id and Decimal(out["balance_usd"]) == Decimal("2.50") and out["entry_id"], out
    r = admin.post(path, json={"amount_usd": "-0.000000001", "kind": "adjustment", "reason": "one nano-dollar back"})
    assert r.status_code == 200, r.text
    assert balance_nano(billing_gw, cust.id) == 2_499_999_999
    entries = ledger(billing_gw, cust.id)
    assert [(e["kind"], e["amount_nano"], e["note"], e["created_by"]) for e in entries] == [
        ("promo", 2_500_000_000, "welcome", me["id"]),
        ("adjustment", -1, "one nano-dollar back", me["id"]),
    ], entries
    assert entries[0]["id"] == out["entry_id"]
    v = verify_ledger(admin)
    assert v["checked"] >= 2, v
    verify_ledger(admin, cust.id)

"""Unit checks of the billing harness itself (no tokengate involved): the fake Stripe API
answers Stripe's wire format with every field async-stripe requires, and the headers
signed by npm ``stripe``'s own helper verify with a plain HMAC-SHA-256 check. If these
fail, the harness is broken, not the gateway."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest

from e2e_helpers import raw_post
from fake_stripe import (
    STRIPE_SECRET_KEY,
    STRIPE_WEBHOOK_SECRET,
    StripeSigner,
    event_body,
    nest_form,
    start_fake_stripe,
)

# What async-stripe's CheckoutSession deserializer refuses to do without.
REQUIRED_SESSION_FIELDS = (
    "id",
    "object",
    "automatic_tax",
    "created",
    "custom_fields",
    "custom_text",
    "expires_at",
    "livemode",
    "mode",
    "payment_method_types",
    "payment_status",
    "shipping_options",
)


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
    return StripeSigner()


def form_post(fake, path: str, fields: list[tuple[str, str]], key: str | None = STRIPE_SECRET_KEY):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    status, _, raw = raw_post(f"{fake.api_base}{path.lstrip('/')}", urlencode(fields).encode(), headers)
    return status, json.loads(raw)


TOPUP_FORM = [
    ("mode", "payment"),
    ("line_items[0][price_data][currency]", "usd"),
    ("line_items[0][price_data][unit_amount]", "1250"),
    ("line_items[0][price_data][product_data][name]", "tokengate credit"),
    ("line_items[0][quantity]", "1"),
    ("client_reference_id", "42"),
    ("metadata[user_id]", "42"),
    ("success_url", "http://gw.test/me/billing?checkout=success&session_id={CHECKOUT_SESSION_ID}"),
    ("cancel_url", "http://gw.test/me/billing?checkout=cancel"),
]


def test_session_creation_answers_a_full_checkout_session(stripe_fake):
    stripe_fake.reset()
    status, s = form_post(stripe_fake, "v1/checkout/sessions", TOPUP_FORM)
    assert status == 200, s
    for f in REQUIRED_SESSION_FIELDS:
        assert f in s and s[f] is not None, f"missing {f}: {s}"
    assert s["object"] == "checkout.session" and s["id"].startswith("cs_test_")
    assert s["automatic_tax"] == {"enabled": False, "liability": None, "provider": None, "status": None}
    assert s["custom_text"] == {
        "after_submit": None,
        "shipping_address": None,
        "submit": None,
        "terms_of_service_acceptance": None,
    }
    assert s["expires_at"] == s["created"] + 86_400 and s["livemode"] is False
    assert s["mode"] == "payment" and s["payment_method_types"] == ["card"]
    assert s["payment_status"] == "unpaid" and s["status"] == "open"
    assert s["amount_total"] == 1250 and s["amount_subtotal"] == 1250 and s["currency"] == "usd"
    assert s["client_reference_id"] == "42" and s["metadata"] == {"user_id": "42"}
    assert s["url"].startswith(f"https://checkout.stripe.com/c/pay/{s['id']}")
    assert s["success_url"].endswith("session_id={CHECKOUT_SESSION_ID}")
    rec = stripe_fake.created_sessions()[-1]
    assert rec.form["line_items[0][price_data][unit_amount]"] == "1250"
    assert rec.nested["line_items"]["0"]["price_data"]["product_data"]["name"] == "tokengate credit"
    assert rec.headers["authorization"] == f"Bearer {STRIPE_SECRET_KEY}"
    # Retrieval answers the same object.
    req_status, _, raw = _get(stripe_fake, f"v1/checkout/sessions/{s['id']}")
    assert req_status == 200 and json.loads(raw) == s


def _get(fake, path: str, key: str = STRIPE_SECRET_KEY):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{fake.api_base}{path}", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_wrong_or_missing_key_is_a_stripe_401(stripe_fake):
    for key in (None, "sk_test_wrong_key_000"):
        status, body = form_post(stripe_fake, "v1/checkout/sessions", TOPUP_FORM, key=key)
        assert status == 401, body
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]


def test_bad_session_requests_are_stripe_400s(stripe_fake):
    status, body = form_post(stripe_fake, "v1/checkout/sessions", [p for p in TOPUP_FORM if p[0] != "mode"])
    assert status == 400 and body["error"]["code"] == "parameter_missing" and body["error"]["param"] == "mode"
    bad = [(k, "12.5" if k.endswith("[unit_amount]") else v) for k, v in TOPUP_FORM]
    status, body = form_post(stripe_fake, "v1/checkout/sessions", bad)
    assert status == 400 and body["error"]["code"] == "parameter_invalid_integer"
    status, body = form_post(stripe_fake, "v1/nothing", [])
    assert status == 404 and body["error"]["type"] == "invalid_request_error"
    stripe_fake.fail_next(500)
    status, body = form_post(stripe_fake, "v1/checkout/sessions", TOPUP_FORM)
    assert status == 500 and body["error"]["type"] == "api_error"
    status, body = form_post(stripe_fake, "v1/checkout/sessions", TOPUP_FORM)
    assert status == 200, body


def test_completed_event_is_a_stripe_event_with_the_paid_session(stripe_fake):
    _, s = form_post(stripe_fake, "v1/checkout/sessions", TOPUP_FORM)
    ev = stripe_fake.completed_event(s["id"])
    assert ev["object"] == "event" and ev["id"].startswith("evt_") and ev["type"] == "checkout.session.completed"
    assert ev["request"] == {"id": None, "idempotency_key": None} and ev["livemode"] is False
    obj = ev["data"]["object"]
    assert obj["id"] == s["id"] and obj["payment_status"] == "paid" and obj["status"] == "complete"
    assert obj["amount_total"] == 1250 and obj["client_reference_id"] == "42"
    for f in REQUIRED_SESSION_FIELDS:
        assert f in obj
    # The stored session itself is untouched.
    assert stripe_fake.session(s["id"])["payment_status"] == "unpaid"


def test_nest_form():
    assert nest_form([("a[b][0][c]", "x"), ("a[b][0][d]", "y"), ("e", "z")]) == {
        "a": {"b": {"0": {"c": "x", "d": "y"}}},
        "e": "z",
    }


def _verify(header: str, body: bytes, secret: str) -> int:
    """Stripe's scheme: ``t=<ts>,v1=<hex hmac_sha256(secret, f"{t}.{body}")>``; returns t."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected), header
    return int(parts["t"])


def test_signatures_from_npm_stripe_verify_with_hmac(signer, stripe_fake):
    ev = stripe_fake.event("customer.created", {"id": "cus_123", "object": "customer"})
    body = event_body(ev)
    now = int(time.time())
    h_now, h_old, h_other = signer.sign_many(
        [(body, None, None), (body, None, now - 3600), (body, "whsec_other", 1_700_000_000)]
    )
    assert abs(_verify(h_now, body, STRIPE_WEBHOOK_SECRET) - now) <= 5
    assert _verify(h_old, body, STRIPE_WEBHOOK_SECRET) == now - 3600
    assert _verify(h_other, body, "whsec_other") == 1_700_000_000
    with pytest.raises(AssertionError):
        _verify(h_other, body, STRIPE_WEBHOOK_SECRET)
    with pytest.raises(AssertionError):
        _verify(h_now, body.replace(b"cus_123", b"cus_124"), STRIPE_WEBHOOK_SECRET)

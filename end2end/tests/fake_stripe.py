"""A fake Stripe API for the billing end-to-end tests, and Stripe's own webhook signer.

:class:`FakeStripe` is one ``ThreadingHTTPServer`` in a background thread speaking
Stripe's wire format for what tokengate calls:

* ``POST /v1/checkout/sessions`` — form-encoded with Stripe's bracket keys
  (``line_items[0][price_data][unit_amount]=500``), ``Authorization: Bearer <secret
  key>``. Answers a full Checkout Session object (every field the real API sends, with
  the ones async-stripe requires: ``id``, ``object``, ``automatic_tax``, ``created``,
  ``custom_fields``, ``custom_text``, ``expires_at``, ``livemode``, ``mode``,
  ``payment_method_types``, ``payment_status``, ``shipping_options``).
* ``GET /v1/checkout/sessions/{id}`` and ``POST /v1/checkout/sessions/{id}/expire``.

Errors use Stripe's shape ``{"error":{"type","message","code"?,"param"?}}``: 401 for a
missing or wrong key, 400 ``parameter_missing`` / ``parameter_invalid_integer`` for a
bad session request, 404 ``resource_missing``. :meth:`FakeStripe.fail_next` makes the
next session creation answer an error of your choosing.

Every request is recorded (:class:`StripeRequest`: method, path, lower-cased headers,
the flat form and the raw body); every session created is kept, and
:meth:`FakeStripe.event` builds the matching Event object (``checkout.session.completed``
with the session paid, ``charge.refunded`` and ``charge.dispute.created`` for its charge,
or any other type).

:class:`StripeSigner` signs raw webhook bodies with ``stripe.webhooks.
generateTestHeaderString`` from npm's ``stripe`` package (``end2end/stripe_sign.mjs``):
one ``node`` process per batch.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

END2END_DIR = Path(__file__).resolve().parents[1]
SIGNER = END2END_DIR / "stripe_sign.mjs"

STRIPE_SECRET_KEY = "sk_test_123"
STRIPE_WEBHOOK_SECRET = "whsec_test_abc"
STRIPE_API_VERSION = "2025-09-30.clover"


def _rand(n: int = 24) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(n))


def stripe_error(typ: str, message: str, code: str | None = None, param: str | None = None) -> dict:
    err: dict = {"type": typ, "message": message}
    if code:
        err["code"] = code
        err["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        err["param"] = param
    return {"error": err}


def nest_form(pairs: list[tuple[str, str]]) -> dict:
    """Stripe's bracket keys as nested objects: ``a[b][0][c]=x`` -> ``{"a": {"b": {"0":
    {"c": "x"}}}}`` (list indexes stay string keys)."""
    out: dict = {}
    for key, value in pairs:
        parts = []
        head, _, rest = key.partition("[")
        parts.append(head)
        while rest:
            inner, _, rest = rest.partition("]")
            parts.append(inner)
            rest = rest[1:] if rest.startswith("[") else rest
        node = out
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {}
            node = nxt
        node[parts[-1]] = value
    return out


# --------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------


@dataclass
class StripeRequest:
    method: str
    path: str
    headers: dict
    form: dict  # flat: {"line_items[0][quantity]": "1", ...} (last value wins)
    pairs: list = field(default_factory=list)  # every (key, value) in order
    raw: bytes = b""

    @property
    def nested(self) -> dict:
        return nest_form(self.pairs)


class FakeStripe:
    """The running fake; use :func:`start_fake_stripe`."""

    def __init__(self, secret_key: str = STRIPE_SECRET_KEY) -> None:
        self.secret_key = secret_key
        self.requests: list[StripeRequest] = []
        self.sessions: dict[str, dict] = {}
        # Session id -> its PaymentIntent, once paid (one per session, as at Stripe).
        self.intents: dict[str, str] = {}
        self.lock = threading.Lock()
        self._fail: list[tuple[int, dict]] = []
        self.server = _Server(("127.0.0.1", 0), _make_handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "FakeStripe":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- addresses -------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def api_base(self) -> str:
        """What ``TOKENGATE_STRIPE_API_BASE`` takes: ``http://127.0.0.1:PORT/`` (the
        client appends ``v1/...``)."""
        return f"http://127.0.0.1:{self.port}/"

    # -- record ----------------------------------------------------------
    def record(self, req: StripeRequest) -> None:
        with self.lock:
            self.requests.append(req)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self._fail.clear()

    def all(self, path: str | None = None, method: str | None = None) -> list[StripeRequest]:
        with self.lock:
            reqs = list(self.requests)
        return [
            r for r in reqs if (path is None or r.path.split("?")[0] == path) and (method is None or r.method == method)
        ]

    def created_sessions(self) -> list[StripeRequest]:
        """The ``POST /v1/checkout/sessions`` requests received."""
        return self.all("/v1/checkout/sessions", "POST")

    def session(self, session_id: str) -> dict:
        with self.lock:
            s = self.sessions.get(session_id)
        assert s is not None, f"the fake Stripe created no session {session_id!r}"
        return json.loads(json.dumps(s))

    def fail_next(self, status: int, body: dict | None = None) -> None:
        """The next ``POST /v1/checkout/sessions`` answers ``status`` with ``body`` (a
        Stripe ``api_error`` by default)."""
        with self.lock:
            self._fail.append((status, body or stripe_error("api_error", "Fake Stripe failure.")))

    def _take_failure(self):
        with self.lock:
            return self._fail.pop(0) if self._fail else None

    # -- objects -----------------------------------------------------------
    def new_session(self, form: dict) -> dict:
        """A Checkout Session as Stripe answers its creation (status open, unpaid)."""
        created = int(time.time())
        sid = "cs_test_a1" + _rand(56)
        unit = int(form.get("line_items[0][price_data][unit_amount]", "0"))
        qty = int(form.get("line_items[0][quantity]", "1"))
        currency = form.get("line_items[0][price_data][currency]", form.get("currency", "usd")).lower()
        metadata = {
            k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[") and k.endswith("]")
        }
        total = unit * qty
        expires_at = int(form["expires_at"]) if form.get("expires_at") else created + 86_400
        pm_types = [v for k, v in sorted(form.items()) if k.startswith("payment_method_types[")] or ["card"]
        session = {
            "id": sid,
            "object": "checkout.session",
            "adaptive_pricing": None,
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": total,
            "amount_total": total,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": form.get("cancel_url"),
            "client_reference_id": form.get("client_reference_id"),
            "client_secret": None,
            "collected_information": None,
            "consent": None,
            "consent_collection": None,
            "created": created,
            "currency": currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": None,
            "customer_creation": form.get("customer_creation", "if_required"),
            "customer_details": None,
            "customer_email": form.get("customer_email"),
            "discounts": [],
            "expires_at": expires_at,
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": form.get("locale"),
            "metadata": metadata,
            "mode": form.get("mode", "payment"),
            "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": "if_required",
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": pm_types,
            "payment_status": "unpaid",
            "phone_number_collection": {"enabled": False},
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": "open",
            "submit_type": None,
            "subscription": None,
            "success_url": form.get("success_url"),
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted",
            "url": f"https://checkout.stripe.com/c/pay/{sid}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
        }
        with self.lock:
            self.sessions[sid] = session
        return json.loads(json.dumps(session))

    def paid_session(self, session_id: str, payment_status: str = "paid", status: str = "complete") -> dict:
        """The session as it is after the customer paid (what a completed event carries)."""
        s = self.session(session_id)
        with self.lock:
            pi = self.intents.setdefault(session_id, "pi_3" + _rand(23))
        s.update(
            {
                "payment_status": payment_status,
                "status": status,
                "payment_intent": pi,
                "customer_details": {
                    "address": {
                        "city": None,
                        "country": "FR",
                        "line1": None,
                        "line2": None,
                        "postal_code": None,
                        "state": None,
                    },
                    "email": "payer@example.com",
                    "name": "Test Payer",
                    "phone": None,
                    "tax_exempt": "none",
                    "tax_ids": [],
                },
                "url": None,
            }
        )
        return s

    def event(self, typ: str, obj: dict, event_id: str | None = None, created: int | None = None) -> dict:
        """A Stripe Event object of type ``typ`` around ``obj`` (``data.object``)."""
        return {
            "id": event_id or "evt_1" + _rand(23),
            "object": "event",
            "api_version": STRIPE_API_VERSION,
            "created": created if created is not None else int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": typ,
        }

    def completed_event(self, session_id: str, payment_status: str = "paid", event_id: str | None = None) -> dict:
        """``checkout.session.completed`` for a session this fake created."""
        obj = self.paid_session(session_id, payment_status=payment_status)
        return self.event("checkout.session.completed", obj, event_id)

    def payment_intent(self, session_id: str) -> str:
        """The PaymentIntent of a session paid through :meth:`paid_session`."""
        return self.paid_session(session_id)["payment_intent"]

    def refunded_event(self, session_id: str, amount_refunded: int, event_id: str | None = None) -> dict:
        """``charge.refunded`` for the session's charge: the Charge object, with
        ``amount_refunded`` the cumulative amount refunded so far (cents), as Stripe sends
        it for full and partial refunds."""
        s = self.paid_session(session_id)
        total = s["amount_total"]
        charge = {
            "id": "ch_3" + s["payment_intent"][4:],
            "object": "charge",
            "amount": total,
            "amount_captured": total,
            "amount_refunded": amount_refunded,
            "balance_transaction": "txn_3" + _rand(23),
            "captured": True,
            "created": int(time.time()) - 60,
            "currency": s["currency"],
            "customer": None,
            "disputed": False,
            "livemode": False,
            "metadata": {},
            "paid": True,
            "payment_intent": s["payment_intent"],
            "payment_method": "pm_1" + _rand(23),
            "refunded": amount_refunded >= total,
            "status": "succeeded",
        }
        return self.event("charge.refunded", charge, event_id)

    def dispute_created_event(
        self, session_id: str, amount: int | None = None, reason: str = "fraudulent", event_id: str | None = None
    ) -> dict:
        """``charge.dispute.created`` for the session's charge: the Dispute object."""
        s = self.paid_session(session_id)
        dispute = {
            "id": "dp_1" + _rand(23),
            "object": "dispute",
            "amount": s["amount_total"] if amount is None else amount,
            "balance_transactions": [],
            "charge": "ch_3" + s["payment_intent"][4:],
            "created": int(time.time()),
            "currency": s["currency"],
            "evidence_details": {"due_by": int(time.time()) + 7 * 86_400, "has_evidence": False},
            "is_charge_refundable": False,
            "livemode": False,
            "metadata": {},
            "payment_intent": s["payment_intent"],
            "reason": reason,
            "status": "needs_response",
        }
        return self.event("charge.dispute.created", dispute, event_id)


def start_fake_stripe(secret_key: str = STRIPE_SECRET_KEY) -> FakeStripe:
    return FakeStripe(secret_key).start()


def session_object(
    session_id: str,
    amount_cents: int,
    user_id,
    payment_status: str = "paid",
    status: str = "complete",
) -> dict:
    """A Checkout Session object (as events carry it) for a session no fake created, e.g.
    one made up for webhook-only tests."""
    now = int(time.time())
    return {
        "id": session_id,
        "object": "checkout.session",
        "amount_subtotal": amount_cents,
        "amount_total": amount_cents,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "cancel_url": "http://127.0.0.1/me/billing?checkout=cancel",
        "client_reference_id": str(user_id),
        "created": now - 60,
        "currency": "usd",
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": None,
        "customer_details": {
            "email": "payer@example.com",
            "name": "Test Payer",
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
        "expires_at": now - 60 + 86_400,
        "livemode": False,
        "metadata": {"user_id": str(user_id)},
        "mode": "payment",
        "payment_intent": "pi_3" + _rand(23),
        "payment_method_types": ["card"],
        "payment_status": payment_status,
        "shipping_options": [],
        "status": status,
        "success_url": "http://127.0.0.1/me/billing?checkout=success&session_id={CHECKOUT_SESSION_ID}",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "url": None,
    }


def new_session_id() -> str:
    return "cs_test_a1" + _rand(56)


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request, client_address):  # keep the test output quiet
        pass


# --------------------------------------------------------------------------
# Handler
# --------------------------------------------------------------------------

_REQUIRED_FOR_PAYMENT = (
    "line_items[0][quantity]",
    "line_items[0][price_data][currency]",
    "line_items[0][price_data][unit_amount]",
    "line_items[0][price_data][product_data][name]",
)


def _make_handler(fake: FakeStripe):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep pytest output quiet
            pass

        def _send(self, status: int, obj) -> None:
            data = json.dumps(obj, indent=2).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", "req_" + _rand(14))
            self.send_header("Stripe-Version", STRIPE_API_VERSION)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def _read(self) -> tuple[StripeRequest, dict]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            query = urlsplit(self.path).query
            pairs = parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
            pairs += parse_qsl(query, keep_blank_values=True)
            form = dict(pairs)
            req = StripeRequest(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                form=form,
                pairs=pairs,
                raw=raw,
            )
            fake.record(req)
            return req, form

        def _authorized(self, req: StripeRequest) -> bool:
            auth = req.headers.get("authorization", "")
            if auth == f"Bearer {fake.secret_key}":
                return True
            if not auth:
                msg = (
                    "You did not provide an API key. You need to provide your API key in the "
                    "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
                )
            else:
                shown = auth.removeprefix("Bearer ")
                msg = f"Invalid API Key provided: {shown[:8]}{'*' * max(0, len(shown) - 12)}{shown[-4:]}"
            self._send(401, stripe_error("invalid_request_error", msg))
            return False

        def do_GET(self):
            req, _ = self._read()
            if not self._authorized(req):
                return
            path = urlsplit(self.path).path
            prefix = "/v1/checkout/sessions/"
            if path.startswith(prefix) and "/" not in path[len(prefix) :]:
                sid = path[len(prefix) :]
                with fake.lock:
                    s = fake.sessions.get(sid)
                if s is None:
                    self._send(
                        404,
                        stripe_error(
                            "invalid_request_error", f"No such checkout.session: '{sid}'", "resource_missing", "session"
                        ),
                    )
                    return
                self._send(200, s)
                return
            self._not_found()

        def do_POST(self):
            req, form = self._read()
            if not self._authorized(req):
                return
            path = urlsplit(self.path).path
            if path == "/v1/checkout/sessions":
                self._create_session(form)
                return
            prefix = "/v1/checkout/sessions/"
            if path.startswith(prefix) and path.endswith("/expire"):
                sid = path[len(prefix) : -len("/expire")]
                with fake.lock:
                    s = fake.sessions.get(sid)
                    if s is not None and s["status"] == "open":
                        s["status"] = "expired"
                        s["url"] = None
                if s is None:
                    self._send(
                        404,
                        stripe_error(
                            "invalid_request_error", f"No such checkout.session: '{sid}'", "resource_missing", "session"
                        ),
                    )
                    return
                self._send(200, fake.session(sid))
                return
            self._not_found()

        def _not_found(self):
            self._send(
                404,
                stripe_error(
                    "invalid_request_error",
                    f"Unrecognized request URL ({self.command}: {urlsplit(self.path).path}). "
                    "Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
                ),
            )

        def _create_session(self, form: dict) -> None:
            failure = fake._take_failure()
            if failure is not None:
                self._send(*failure)
                return
            mode = form.get("mode")
            if not mode:
                self._send(
                    400,
                    stripe_error("invalid_request_error", "Missing required param: mode.", "parameter_missing", "mode"),
                )
                return
            if mode not in ("payment", "setup", "subscription"):
                self._send(
                    400,
                    stripe_error(
                        "invalid_request_error",
                        "Invalid mode: must be one of payment, setup, or subscription",
                        "parameter_invalid_string",
                        "mode",
                    ),
                )
                return
            if mode == "payment":
                for key in _REQUIRED_FOR_PAYMENT:
                    if not form.get(key):
                        self._send(
                            400,
                            stripe_error(
                                "invalid_request_error", f"Missing required param: {key}.", "parameter_missing", key
                            ),
                        )
                        return
                for key in ("line_items[0][quantity]", "line_items[0][price_data][unit_amount]"):
                    if not form[key].isdigit():
                        self._send(
                            400,
                            stripe_error(
                                "invalid_request_error",
                                f"Invalid integer: {form[key]}",
                                "parameter_invalid_integer",
                                key,
                            ),
                        )
                        return
            if not form.get("success_url") and form.get("ui_mode", "hosted") == "hosted":
                self._send(
                    400,
                    stripe_error(
                        "invalid_request_error",
                        "You must provide a success_url when ui_mode is hosted.",
                        "parameter_missing",
                        "success_url",
                    ),
                )
                return
            self._send(200, fake.new_session(form))

    return Handler


# --------------------------------------------------------------------------
# Signing with Stripe's own helper (npm stripe)
# --------------------------------------------------------------------------


class StripeSigner:
    """``Stripe-Signature`` headers from ``stripe.webhooks.generateTestHeaderString``."""

    def __init__(self, secret: str = STRIPE_WEBHOOK_SECRET) -> None:
        self.secret = secret

    @staticmethod
    def check_installed() -> str | None:
        """Why the signer cannot run (``None`` when it can)."""
        if not (END2END_DIR / "node_modules" / "stripe" / "package.json").exists():
            return (
                "npm package `stripe` missing in end2end/node_modules: run scripts/setup.sh test "
                "(or `cd end2end && npm install`)"
            )
        try:
            subprocess.run(["node", "--version"], capture_output=True, check=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            return f"node is not runnable: {e}"
        return None

    def sign_many(self, jobs: list[tuple[bytes | str, str | None, int | None]]) -> list[str]:
        """[(raw body, secret or None for the default, timestamp or None for now)] ->
        headers."""
        payload = [
            {
                "payload": body.decode("utf-8") if isinstance(body, bytes) else body,
                "secret": secret or self.secret,
                "timestamp": ts,
            }
            for body, secret, ts in jobs
        ]
        proc = subprocess.run(
            ["node", str(SIGNER)],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            cwd=END2END_DIR,
            timeout=60,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"stripe_sign.mjs failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        headers = json.loads(proc.stdout)
        assert isinstance(headers, list) and len(headers) == len(jobs), proc.stdout[:500]
        return headers

    def sign(self, body: bytes | str, secret: str | None = None, timestamp: int | None = None) -> str:
        return self.sign_many([(body, secret, timestamp)])[0]


def event_body(event: dict) -> bytes:
    """The raw webhook body for ``event`` (ASCII JSON, so the bytes signed are the bytes
    sent)."""
    return json.dumps(event, indent=2).encode("ascii")

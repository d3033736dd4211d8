"""OpenID Connect sign-in against a real OpenID Provider (npm's ``oidc-provider``, started
here on 127.0.0.1 with a static client): the portal's login completed by an HTTP client
following every redirect and submitting the provider's own login and consent forms."""

from __future__ import annotations

import html
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from conftest import REPO_ROOT, free_port, start_gateway, stop_gateway, stop_process

CLIENT_ID = "tokengate-test"
CLIENT_SECRET = "tokengate-test-secret"


def start_provider(port: int, redirect_uri: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["node", "oidc/provider.mjs", str(port), redirect_uri, CLIENT_ID, CLIENT_SECRET],
        cwd=REPO_ROOT / "end2end",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY"):
            return proc
        if proc.poll() is not None:
            break
    stop_process(proc)
    raise RuntimeError("oidc-provider did not start")


@pytest.fixture(scope="module")
def oidc_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oidc")
    provider_port = free_port()
    issuer = f"http://127.0.0.1:{provider_port}"
    config = f"""
[[oidc]]
id = "test"
name = "Test IdP"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
link_by_email = true
"""
    gw = start_gateway(tmp, config)
    provider = start_provider(provider_port, f"{gw.url}/auth/oidc/test/callback")
    yield gw, issuer
    stop_process(provider)
    stop_gateway(gw, "oidc")


def forms(page: str):
    """(action, method, {name: value}) of each form on an HTML page."""
    out = []
    for m in re.finditer(r"<form([^>]*)>(.*?)</form>", page, re.S | re.I):
        attrs, body = m.group(1), m.group(2)
        action = re.search(r'action="([^"]*)"', attrs)
        method = re.search(r'method="([^"]*)"', attrs, re.I)
        fields = {}
        for inp in re.finditer(r"<input([^>]*)>", body, re.I):
            a = inp.group(1)
            name = re.search(r'name="([^"]*)"', a)
            value = re.search(r'value="([^"]*)"', a)
            if name:
                fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
        out.append((html.unescape(action.group(1)) if action else "", (method.group(1) if method else "get").lower(), fields))
    return out


def sign_in(gw, client: httpx.Client, login: str, next_path: str = "/console") -> httpx.Response:
    """Drives the whole flow from tokengate's start URL; returns tokengate's final answer
    (the redirect after the callback)."""
    r = client.get(f"{gw.url}/auth/oidc/test/start", params={"next": next_path})
    assert r.status_code in (302, 303), r.text
    for _ in range(30):
        if r.status_code in (301, 302, 303, 307, 308):
            url = urljoin(str(r.request.url), r.headers["location"])
            if url.startswith(f"{gw.url}/auth/oidc/test/callback"):
                return client.get(url)
            r = client.get(url)
            continue
        assert r.status_code == 200, f"{r.status_code} {r.request.url}\n{r.text[:500]}"
        page_forms = [f for f in forms(r.text) if f[1] == "post"]
        assert page_forms, f"no form at {r.request.url}:\n{r.text[:500]}"
        action, _, fields = page_forms[0]
        if "login" in fields:
            fields["login"] = login
            fields["password"] = "any-password"
        r = client.post(urljoin(str(r.request.url), action), data=fields)
    raise AssertionError("the sign-in flow did not come back to tokengate")


def me(gw, client: httpx.Client):
    return client.get(f"{gw.url}/api/v1/me")


def test_login_page_offers_the_provider(oidc_env):
    gw, _ = oidc_env
    page = httpx.get(f"{gw.url}/login").text
    assert "Sign in with Test IdP" in page
    assert "/auth/oidc/test/start" in page


def test_start_uses_pkce_state_and_nonce(oidc_env):
    gw, issuer = oidc_env
    with httpx.Client(follow_redirects=False) as c:
        r = c.get(f"{gw.url}/auth/oidc/test/start")
    assert r.status_code == 303
    loc = urlsplit(r.headers["location"])
    q = parse_qs(loc.query)
    assert f"{loc.scheme}://{loc.netloc}" == issuer
    assert q["client_id"] == [CLIENT_ID]
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) >= 43
    assert q["state"][0] and q["nonce"][0]
    assert q["redirect_uri"] == [f"{gw.url}/auth/oidc/test/callback"]
    assert "openid" in q["scope"][0].split()


def test_new_user_signs_in_and_again_as_the_same_user(oidc_env):
    gw, issuer = oidc_env
    with httpx.Client(follow_redirects=False) as c:
        r = sign_in(gw, c, "alice")
        assert r.status_code == 303 and r.headers["location"] == "/console", r.headers
        assert "tg_session=" in r.headers.get("set-cookie", "")
        first = me(gw, c)
        assert first.status_code == 200, first.text
        assert first.json()["email"] == "alice@example.com"
    rows = gw.query("SELECT issuer, subject, user_id FROM oidc_identities WHERE subject = 'alice'")
    assert [(r[0], r[1]) for r in rows] == [(issuer, "alice")]
    with httpx.Client(follow_redirects=False) as c:
        sign_in(gw, c, "alice")
        assert me(gw, c).json()["id"] == first.json()["id"]
    assert gw.query("SELECT COUNT(*) FROM users WHERE email_lower = 'alice@example.com'")[0][0] == 1


def verification_link(gw, email: str) -> str:
    """The newest verification link mailed to ``email``: in demo mode without SMTP the
    server writes account mail to its log (stderr)."""
    pattern = r"to=" + re.escape(email) + r"\b.*?(/auth/verify-email\?token=[A-Za-z0-9_-]+)"
    for _ in range(50):
        log = re.sub(r"\x1b\[[0-9;]*m", "", gw.stderr_path.read_text(errors="replace"))
        found = re.findall(pattern, log, re.S | re.I)
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"no verification link for {email} in the log")


def test_first_sign_in_never_takes_over_an_unverified_local_account(oidc_env):
    gw, _ = oidc_env
    with httpx.Client(follow_redirects=False) as c:
        r = c.post(
            f"{gw.url}/auth/signup",
            data={"email": "Bob@Example.com", "password": "a-long-password", "display_name": "Bob"},
            headers={"Origin": gw.url},
        )
        assert r.status_code == 303 and r.headers["location"] == "/console"
        local_id = me(gw, c).json()["id"]
    # The address was never verified: the provider's word does not link it (whoever
    # signed up with it may not own it).
    with httpx.Client(follow_redirects=False) as c:
        r = sign_in(gw, c, "bob")
        assert r.status_code == 303 and r.headers["location"] == "/login?error=oidc_link", r.headers
        assert me(gw, c).status_code == 401
    # Signed in to the account with its password first, the same sign-in links it.
    with httpx.Client(follow_redirects=False) as c:
        r = c.post(
            f"{gw.url}/auth/login",
            data={"email": "bob@example.com", "password": "a-long-password"},
            headers={"Origin": gw.url},
        )
        assert r.status_code == 303 and r.headers["location"] == "/console"
        r = sign_in(gw, c, "bob")
        assert r.status_code == 303 and r.headers["location"] == "/console", r.headers
        assert me(gw, c).json()["id"] == local_id
    with httpx.Client(follow_redirects=False) as c:
        sign_in(gw, c, "bob")
        assert me(gw, c).json()["id"] == local_id


def test_first_sign_in_links_an_account_whose_address_was_verified(oidc_env):
    gw, _ = oidc_env
    with httpx.Client(follow_redirects=False) as c:
        r = c.post(
            f"{gw.url}/auth/signup",
            data={"email": "erin@example.com", "password": "a-long-password", "display_name": "Erin"},
            headers={"Origin": gw.url},
        )
        assert r.status_code == 303 and r.headers["location"] == "/console"
        local_id = me(gw, c).json()["id"]
    # The mailed link (demo mode: written to the log) verifies the address once.
    link = verification_link(gw, "erin@example.com")
    r = httpx.get(f"{gw.url}{link}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?verified=1"
    r = httpx.get(f"{gw.url}{link}", follow_redirects=False)
    assert r.headers["location"] == "/login?error=verify_link"
    with httpx.Client(follow_redirects=False) as c:
        r = sign_in(gw, c, "erin")
        assert r.status_code == 303 and r.headers["location"] == "/console", r.headers
        assert me(gw, c).json()["id"] == local_id


def test_forged_state_is_refused(oidc_env):
    gw, _ = oidc_env
    with httpx.Client(follow_redirects=False) as c:
        c.get(f"{gw.url}/auth/oidc/test/start")
        r = c.get(f"{gw.url}/auth/oidc/test/callback", params={"code": "x", "state": "forged"})
        assert r.status_code == 303 and r.headers["location"] == "/login?error=oidc"
        assert me(gw, c).status_code == 401
        # Without a pending sign-in in the session, a callback is refused too.
        r = httpx.get(f"{gw.url}/auth/oidc/test/callback", params={"code": "x", "state": "y"})
        assert r.status_code == 303 and r.headers["location"] == "/login?error=oidc"


def test_next_stays_on_site(oidc_env):
    gw, _ = oidc_env
    with httpx.Client(follow_redirects=False) as c:
        r = sign_in(gw, c, "carol", next_path="https://evil.example/")
        assert r.headers["location"] == "/console"

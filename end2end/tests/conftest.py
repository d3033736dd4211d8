"""Shared fixtures for the tokengate end-to-end tests.

* ``fake_upstream``: the fault-injecting fake upstream of ``fake_upstream.py`` (OpenAI
  chat completions and embeddings, Anthropic messages, real wire formats, deterministic
  usage, every request recorded); session-scoped. ``upstream`` is the same object with
  its record cleared for the test.
* ``gateway``: a tokengate-server process in demo mode (temp data dir, random port)
  configured with the fake upstream (provider ``fake``, kind openai) and a provider
  pointing at a closed port.
* ``small_body_gateway``: a second instance with TOKENGATE_MAX_BODY_BYTES=1000.
* ``multi_gateway``: an instance with providers of both kinds on the fake upstream
  (``fakeoai`` kind openai, ``fakeanth`` kind anthropic), failing providers for
  fallback (closed port, pinned 503 / 429 / slow / wrong provider key), aliases with a
  failing first tier, and ``TOKENGATE_UPSTREAM_TIMEOUT_MS`` = ``UPSTREAM_TIMEOUT_MS``.
  ``oai`` / ``anth`` are the openai / anthropic SDK clients for it (demo key);
  ``fault_model(kind)`` hands out a model no other test uses, for tests that make a
  target fail (tokengate has a circuit breaker per target).

Set TOKENGATE_E2E_LOG_DIR to keep each server's stdout/stderr after the run.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from fake_upstream import (  # noqa: F401  (re-exported for the test modules)
    ANTHROPIC_KEY,
    FAKE_COMPLETION_TOKENS,
    FAKE_CONTENT,
    OPENAI_KEY,
    start_fake_upstream,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVIDER_KEY = OPENAI_KEY
INITIAL_BALANCE_NANO = 5_000_000_000


def server_binary() -> Path:
    if os.environ.get("TOKENGATE_BIN"):
        return Path(os.environ["TOKENGATE_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR") or str(
        Path.home() / ".cache" / "tokengate-target"
    )
    return Path(target) / "debug" / "tokengate-server"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# Fake upstream (fake_upstream.py): OpenAI chat/embeddings + Anthropic messages
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_upstream():
    up = start_fake_upstream()
    yield up
    up.stop()


@pytest.fixture()
def upstream(fake_upstream):
    """The session's fake upstream with its request record cleared for this test."""
    fake_upstream.reset()
    yield fake_upstream


# --------------------------------------------------------------------------
# tokengate server process
# --------------------------------------------------------------------------


@dataclass
class Gateway:
    proc: subprocess.Popen
    port: int
    data_dir: Path
    api_key: str
    stdout_path: Path
    stderr_path: Path
    # How the process was started, for companion commands (`admin token`, ...).
    env: dict | None = None
    config_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "tokengate.db"

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql: str, params=()):
        conn = self.db()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def start_gateway(tmp: Path, config_text: str | None = None, extra_env: dict | None = None) -> Gateway:
    binary = server_binary()
    if not binary.exists():
        pytest.fail(f"tokengate-server binary not found at {binary}")
    port = free_port()
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "TOKENGATE_LISTEN": f"127.0.0.1:{port}",
            "TOKENGATE_DATA_DIR": str(data_dir),
            "TOKENGATE_DEMO": "1",
            "TOKENGATE_LOG": "info",
        }
    )
    env.pop("TOKENGATE_DATABASE_URL", None)
    env.update(extra_env or {})
    args = [str(binary)]
    cfg = None
    if config_text is not None:
        cfg = tmp / "tokengate.toml"
        cfg.write_text(config_text)
        args += ["--config", str(cfg)]
    stdout_path = tmp / "stdout.log"
    stderr_path = tmp / "stderr.log"
    out = open(stdout_path, "wb")
    err = open(stderr_path, "wb")
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=out, stderr=err)
    out.close()
    err.close()

    deadline = time.time() + 60
    key = None
    healthy = False
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"tokengate-server exited early with {proc.returncode}:\n"
                + stderr_path.read_text(errors="replace")[-4000:]
            )
        if key is None:
            m = re.search(r"API key:\s+(sk-tg-\S+)", stdout_path.read_text(errors="replace"))
            if m:
                key = m.group(1)
        if not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    healthy = r.status == 200
            except (urllib.error.URLError, OSError):
                pass
        if key and healthy:
            break
        time.sleep(0.1)
    else:
        stop_process(proc)
        raise RuntimeError(
            f"tokengate-server not ready (key={key!r}, healthy={healthy}):\n"
            + stderr_path.read_text(errors="replace")[-4000:]
        )
    assert len(key) == 49, f"unexpected demo key length: {key!r}"
    return Gateway(proc, port, data_dir, key, stdout_path, stderr_path, env, cfg)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def stop_gateway(gw: "Gateway", name: str) -> None:
    """Stops the server; with TOKENGATE_E2E_LOG_DIR set, keeps its stdout/stderr there
    (``<name>.stdout.log`` / ``<name>.stderr.log``) for post-mortems."""
    stop_process(gw.proc)
    keep = os.environ.get("TOKENGATE_E2E_LOG_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for src, suffix in ((gw.stdout_path, "stdout"), (gw.stderr_path, "stderr")):
            try:
                (Path(keep) / f"{name}.{suffix}.log").write_bytes(src.read_bytes())
            except OSError:
                pass


def closed_port() -> int:
    # Bind and immediately release a port: nothing is listening there afterwards.
    return free_port()


@pytest.fixture(scope="session")
def gateway(fake_upstream):
    dead_port = closed_port()
    config = f"""
[[providers]]
name = "fake"
kind = "openai"
base_url = "{fake_upstream.base_url}"
api_key = "{PROVIDER_KEY}"

[[providers]]
name = "dead"
kind = "openai"
base_url = "http://127.0.0.1:{dead_port}/v1"
api_key = "sk-dead"

[[models]]
name = "fake/gpt-test"
provider = "fake"
upstream_model = "gpt-test"
input_usd_per_m = "0.15"
output_usd_per_m = "0.60"

[[models]]
name = "dead/gpt-dead"
provider = "dead"
upstream_model = "gpt-dead"
input_usd_per_m = "1.00"
output_usd_per_m = "2.00"

[[aliases]]
name = "tokengate-test"
targets = [{{ model = "fake/gpt-test" }}]
"""
    with tempfile.TemporaryDirectory(prefix="tokengate-e2e-") as tmp:
        gw = start_gateway(Path(tmp), config)
        try:
            yield gw
        finally:
            stop_gateway(gw, "gateway")


@pytest.fixture(scope="session")
def small_body_gateway():
    with tempfile.TemporaryDirectory(prefix="tokengate-e2e-small-") as tmp:
        gw = start_gateway(Path(tmp), None, {"TOKENGATE_MAX_BODY_BYTES": "1000"})
        try:
            yield gw
        finally:
            stop_gateway(gw, "small_body_gateway")


@pytest.fixture()
def client(gateway):
    import openai

    return openai.OpenAI(api_key=gateway.api_key, base_url=gateway.base_url, max_retries=0, timeout=30)


# --------------------------------------------------------------------------
# Multi-provider instance: both provider kinds, fallback aliases
# --------------------------------------------------------------------------

# Per-attempt time allowed until upstream headers on the multi-provider instance, and a
# delay comfortably above it for the slow provider / [fault:delay:...] tests.
UPSTREAM_TIMEOUT_MS = 2500
SLOW_DELAY_MS = 6000

# Prices (USD per million tokens) -> nano-USD per million tokens, per model.
MULTI_PRICES = {
    # input, output, cache_read, cache_write
    "fakeoai/gpt-test": ("0.15", "0.60", "0.075", None),
    "fakeoai/embed-test": ("0.0125", "0", None, None),
    "fakeanth/claude-test": ("3", "15", "0.30", "3.75"),
    "deadoai/gpt-dead": ("1", "2", None, None),
    "down503/gpt-down": ("1", "2", None, None),
    "busy429/claude-busy": ("1", "2", None, None),
    "slowoai/gpt-slow": ("1", "2", None, None),
    "wrongkey/gpt-wrongkey": ("1", "2", None, None),
}
MULTI_MAX_OUTPUT = {"fakeoai/gpt-test": 4096, "fakeanth/claude-test": 8192}

# tokengate keeps a circuit breaker per routing target (model): a burst of injected
# failures on one target would open it and turn later requests into 503s. Tests that
# make a target fail therefore use targets of their own: a pool of models identical to
# fakeoai/gpt-test and fakeanth/claude-test (same provider, upstream model and prices),
# handed out one per test by the ``fault_model`` fixture, and dedicated failing first
# tiers per fallback alias.
FAULT_POOL_SIZE = 40
FAULT_POOL = {
    "openai": [f"fakeoai/fault-{i:02d}" for i in range(FAULT_POOL_SIZE)],
    "anthropic": [f"fakeanth/fault-{i:02d}" for i in range(FAULT_POOL_SIZE)],
}
for _name in FAULT_POOL["openai"]:
    MULTI_PRICES[_name] = MULTI_PRICES["fakeoai/gpt-test"]
    MULTI_MAX_OUTPUT[_name] = MULTI_MAX_OUTPUT["fakeoai/gpt-test"]
for _name in FAULT_POOL["anthropic"]:
    MULTI_PRICES[_name] = MULTI_PRICES["fakeanth/claude-test"]
    MULTI_MAX_OUTPUT[_name] = MULTI_MAX_OUTPUT["fakeanth/claude-test"]
for _name in ("fakeoai/pair", "fakeanth/pair"):
    _base = "fakeoai/gpt-test" if _name.startswith("fakeoai") else "fakeanth/claude-test"
    MULTI_PRICES[_name] = MULTI_PRICES[_base]
    MULTI_MAX_OUTPUT[_name] = MULTI_MAX_OUTPUT[_base]
# One failing first-tier model per fallback alias.
FAILING = {
    "deadoai/gpt-dead-1": ("deadoai", "gpt-dead"),
    "deadoai/gpt-dead-2": ("deadoai", "gpt-dead"),
    "deadoai/gpt-dead-3": ("deadoai", "gpt-dead"),
    "down503/gpt-down": ("down503", "gpt-down"),
    "busy429/claude-busy": ("busy429", "claude-busy"),
    "slowoai/gpt-slow": ("slowoai", "gpt-slow"),
    "wrongkey/gpt-wrongkey-1": ("wrongkey", "gpt-wrongkey"),
    "wrongkey/gpt-wrongkey-2": ("wrongkey", "gpt-wrongkey"),
}
for _name in FAILING:
    MULTI_PRICES.setdefault(_name, ("1", "2", None, None))


def _model_toml(name: str, provider: str, upstream_model: str) -> str:
    inp, out, cr, cw = MULTI_PRICES[name]
    lines = [
        "[[models]]",
        f'name = "{name}"',
        f'provider = "{provider}"',
        f'upstream_model = "{upstream_model}"',
        f'input_usd_per_m = "{inp}"',
        f'output_usd_per_m = "{out}"',
    ]
    if cr is not None:
        lines.append(f'cache_read_usd_per_m = "{cr}"')
    if cw is not None:
        lines.append(f'cache_write_usd_per_m = "{cw}"')
    if name in MULTI_MAX_OUTPUT:
        lines.append(f"max_output_tokens = {MULTI_MAX_OUTPUT[name]}")
    return "\n".join(lines) + "\n"


def _provider_toml(name: str, kind: str, base_url: str, key: str) -> str:
    return (
        "[[providers]]\n"
        f'name = "{name}"\nkind = "{kind}"\nbase_url = "{base_url}"\napi_key = "{key}"\n'
    )


def multi_config(fake, dead_port: int) -> str:
    parts = [
        _provider_toml("fakeoai", "openai", fake.base_url, OPENAI_KEY),
        _provider_toml("fakeanth", "anthropic", fake.base_url, ANTHROPIC_KEY),
        _provider_toml("deadoai", "openai", f"http://127.0.0.1:{dead_port}/v1", "sk-dead"),
        _provider_toml("down503", "openai", fake.fault_base_url("status:503"), OPENAI_KEY),
        _provider_toml("busy429", "anthropic", fake.fault_base_url("status:429"), ANTHROPIC_KEY),
        _provider_toml("slowoai", "openai", fake.fault_base_url(f"delay:{SLOW_DELAY_MS}"), OPENAI_KEY),
        _provider_toml("wrongkey", "openai", fake.base_url, "sk-wrong-provider-key"),
        _model_toml("fakeoai/gpt-test", "fakeoai", "gpt-test"),
        _model_toml("fakeoai/embed-test", "fakeoai", "embed-test"),
        _model_toml("fakeanth/claude-test", "fakeanth", "claude-test"),
    ]
    parts += [_model_toml(name, prov, up) for name, (prov, up) in FAILING.items()]
    parts += [_model_toml(name, "fakeoai", "gpt-test") for name in FAULT_POOL["openai"] + ["fakeoai/pair"]]
    parts += [_model_toml(name, "fakeanth", "claude-test") for name in FAULT_POOL["anthropic"] + ["fakeanth/pair"]]
    aliases = {
        # first tier fails (closed port / pinned 503 / pinned 429 / too slow / bad provider
        # key), second tier healthy
        "fallback-dead": ("deadoai/gpt-dead-1", "fakeoai/gpt-test"),
        "fallback-dead-anth": ("deadoai/gpt-dead-2", "fakeanth/claude-test"),
        "fallback-dead-messages": ("deadoai/gpt-dead-3", "fakeoai/gpt-test"),
        "fallback-503": ("down503/gpt-down", "fakeanth/claude-test"),
        "fallback-429": ("busy429/claude-busy", "fakeoai/gpt-test"),
        "fallback-slow": ("slowoai/gpt-slow", "fakeoai/gpt-test"),
        "fallback-wrongkey": ("wrongkey/gpt-wrongkey-1", "fakeanth/claude-test"),
        # two healthy tiers: proves there is no retry once bytes reached the client
        "pair-oai-first": ("fakeoai/pair", "fakeanth/pair"),
        "pair-anth-first": ("fakeanth/pair", "fakeoai/pair"),
    }
    for name, (first, second) in aliases.items():
        parts.append(
            "[[aliases]]\n"
            f'name = "{name}"\n'
            f'targets = [{{ model = "{first}", priority = 0, weight = 1 }}, '
            f'{{ model = "{second}", priority = 1, weight = 1 }}]\n'
        )
    return "\n".join(parts)


@pytest.fixture(scope="session")
def multi_gateway(fake_upstream):
    dead_port = closed_port()
    with tempfile.TemporaryDirectory(prefix="tokengate-e2e-multi-") as tmp:
        gw = start_gateway(
            Path(tmp),
            multi_config(fake_upstream, dead_port),
            {"TOKENGATE_UPSTREAM_TIMEOUT_MS": str(UPSTREAM_TIMEOUT_MS)},
        )
        try:
            yield gw
        finally:
            stop_gateway(gw, "multi_gateway")


@pytest.fixture()
def oai(multi_gateway):
    """openai SDK client for the multi-provider instance."""
    import openai

    return openai.OpenAI(api_key=multi_gateway.api_key, base_url=multi_gateway.base_url, max_retries=0, timeout=30)


@pytest.fixture()
def anth(multi_gateway):
    """anthropic SDK client for the multi-provider instance (the SDK appends /v1/...)."""
    import anthropic

    return anthropic.Anthropic(api_key=multi_gateway.api_key, base_url=multi_gateway.url, max_retries=0, timeout=30)


@pytest.fixture(scope="session")
def _fault_pool():
    return {kind: list(names) for kind, names in FAULT_POOL.items()}


@pytest.fixture()
def fault_model(_fault_pool):
    """``fault_model("openai")`` / ``fault_model("anthropic")``: a model name no other
    test uses (same provider, upstream model and prices as fakeoai/gpt-test or
    fakeanth/claude-test), so failures injected on it cannot open the circuit breaker
    of a target other tests rely on."""

    def take(kind: str) -> str:
        pool = _fault_pool[kind]
        assert pool, f"FAULT_POOL_SIZE too small for the {kind} fault tests"
        return pool.pop(0)

    return take

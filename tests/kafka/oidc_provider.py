"""A small OIDC identity provider for tests: a client-credentials token endpoint and a JWKS.

Tokens are RS256 JWTs (PyJWT, an RSA key made for the run) with ``sub`` (the client id), ``aud``,
``iss``, ``iat``, ``exp`` and ``scope``; Kafka's ``OAuthBearerValidatorCallbackHandler`` checks them
against the JWKS. The token endpoint is served over HTTPS with a certificate of the test CA (clients
verify it with ``https.ca.location``) and, for the broker, the JWKS over plain HTTP on loopback.

Every token request is recorded (:class:`TokenRequest`); a test awaits the ones it expects with
:meth:`OidcProvider.wait_for`, which wakes on each new request (no polling, no sleeps).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.kafka.tls import TlsFiles

AUDIENCE = "patchgate-test-kafka"
ISSUER = "https://idp.patchgate.test"
KEY_ID = "patchgate-test-key-1"


@dataclass(frozen=True)
class Client:
    secret: str
    lifetime_s: int = 3600  # expires_in and exp - iat of its tokens


@dataclass(frozen=True)
class TokenRequest:
    client_id: str | None
    user_agent: str
    scope: str | None
    granted: bool
    token: str | None
    issued_at: float  # time.time() when answered
    lifetime_s: int


@dataclass
class OidcProvider:
    """Start with ``with``; ``token_url`` (HTTPS) for clients, ``jwks_url`` (HTTP) for the broker."""

    tls: TlsFiles
    clients: dict[str, Client]
    requests: list[TokenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._changed = threading.Condition()
        handler = _handler(self)
        self._token_server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.server_certificate, self.tls.server_key)
        self._token_server.socket = context.wrap_socket(self._token_server.socket, server_side=True)
        self._jwks_server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.token_url = f"https://127.0.0.1:{self._token_server.server_address[1]}/oauth2/token"
        self.jwks_url = f"http://127.0.0.1:{self._jwks_server.server_address[1]}/jwks"
        # the same endpoint over plain HTTP, for tests of the loopback exception and of the client
        self.plain_token_url = f"http://127.0.0.1:{self._jwks_server.server_address[1]}/oauth2/token"
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> OidcProvider:
        for server in (self._token_server, self._jwks_server):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        for server in (self._token_server, self._jwks_server):
            server.shutdown()
            server.server_close()

    # -- what the endpoints answer -------------------------------------------------------------
    def jwks(self) -> dict[str, Any]:
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": KEY_ID, "use": "sig", "alg": "RS256"}]}

    def issue(self, client_id: str, scope: str | None, lifetime_s: int) -> str:
        now = int(time.time())
        claims = {"sub": client_id, "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + lifetime_s,
                  "scope": scope or "kafka"}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KEY_ID})

    def answer_token_request(self, authorization: str, form: dict[str, list[str]], user_agent: str) -> tuple[int, dict]:
        client_id, secret = _basic(authorization)
        client = self.clients.get(client_id or "")
        scope = form.get("scope", [None])[0]
        granted = client is not None and client.secret == secret and form.get("grant_type") == ["client_credentials"]
        lifetime = client.lifetime_s if client is not None else 0
        token = self.issue(client_id or "", scope, lifetime) if granted else None
        self._record(TokenRequest(client_id, user_agent, scope, granted, token, time.time(), lifetime))
        if token is None:
            return 401, {"error": "invalid_client", "error_description": "client authentication failed"}
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}

    # -- what was asked ------------------------------------------------------------------------
    def _record(self, request: TokenRequest) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def wait_for(self, predicate: Any, timeout: float) -> list[TokenRequest]:
        """Block until ``predicate(requests)`` holds (re-checked at each request); the requests then."""
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(list(self.requests)), timeout), self.requests
            return list(self.requests)


def _basic(authorization: str) -> tuple[str | None, str | None]:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return None, None
    return client_id, secret


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            if self.path == "/jwks":
                self._send(200, provider.jwks())
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(min(length, 65536)).decode())
            if self.path != "/oauth2/token":
                self._send(404, {"error": "not_found"})
                return
            status, body = provider.answer_token_request(self.headers.get("Authorization", ""), form,
                                                         self.headers.get("User-Agent", ""))
            self._send(status, body)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are recorded instead

    return Handler

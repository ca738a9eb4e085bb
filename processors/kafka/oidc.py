"""Access tokens from an OIDC token endpoint (client-credentials grant) for SASL/OAUTHBEARER.

librdkafka clients fetch their tokens themselves from the same properties
(:class:`~processors.kafka.config.OidcSettings`); this module serves the worker's Faust (aiokafka)
clients, which need a token provider, and the start-up check that names the token endpoint when it
refuses the credentials or cannot be reached (rather than a broker that merely "refused the client").

The request is the one librdkafka sends: ``POST`` to ``sasl.oauthbearer.token.endpoint.url`` with
``Authorization: Basic base64(client_id:client_secret)`` and the form
``grant_type=client_credentials[&scope=...]``. Redirects are not followed (the credentials would go
with them), the answer is read up to 64 KiB, within :data:`REQUEST_TIMEOUT_S`.

A token is kept until 80 % of its lifetime has passed (``expires_in``, else the JWT's ``exp``), then
a new one is fetched; if that fails while the old one is still valid, the old one is used and a warning
logged. After a failure no new request goes out for :data:`RETRY_AFTER_S` (a client reconnecting in
a loop must not hammer the identity provider): the failure is repeated. Neither the client secret
nor a token ever appears in a message.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlencode

from processors.errors import PatchgateError
from processors.kafka.config import KafkaConfig, KafkaConfigError, OidcSettings

log = logging.getLogger("patchgate.kafka.oidc")

REQUEST_TIMEOUT_S = 10.0
RETRY_AFTER_S = 5.0
REFRESH_FRACTION = 0.8  # as librdkafka: a new token once 80 % of the lifetime has passed
MAX_RESPONSE_BYTES = 64 * 1024


class OidcTokenError(PatchgateError):
    """The token endpoint refused the client credentials, could not be reached or answered nonsense."""


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    lifetime_s: float


def _user_agent() -> str:
    try:
        return f"patchgate/{version('patchgate')}"
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "patchgate"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx answer becomes an HTTPError, reported as such


class OidcTokenSource:
    """Thread-safe cached client-credentials tokens for one set of :class:`OidcSettings`."""

    def __init__(self, settings: OidcSettings, *, clock: Callable[[], float] = time.monotonic,
                 timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.settings = settings
        self.clock = clock
        self.timeout = timeout
        self.requests = 0  # token requests sent, for tests and metrics
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._failure: OidcTokenError | None = None
        self._retry_at = 0.0
        try:
            context = ssl.create_default_context(cafile=settings.ca_file)
        except (ssl.SSLError, OSError) as error:
            raise KafkaConfigError(f"https.ca.location: not a usable CA file: {error}") from None
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects())

    def token(self) -> str:
        """A valid access token: the cached one, or a new one from the endpoint (blocking, bounded)."""
        with self._lock:
            now = self.clock()
            if self._token is not None and now < self._refresh_at:
                return self._token
            if self._failure is not None and now < self._retry_at:
                return self._still_valid(now, self._failure)
            try:
                fetched = self.fetch()
            except OidcTokenError as failure:
                self._failure, self._retry_at = failure, now + RETRY_AFTER_S
                return self._still_valid(now, failure)
            self._failure = None
            self._token = fetched.value
            self._refresh_at = now + fetched.lifetime_s * REFRESH_FRACTION
            self._expires_at = now + fetched.lifetime_s
            return fetched.value

    def _still_valid(self, now: float, failure: OidcTokenError) -> str:
        if self._token is not None and now < self._expires_at:
            log.warning("could not renew the OAUTHBEARER token, the current one stays valid for %.0fs: %s",
                        self._expires_at - now, failure)
            return self._token
        raise failure

    def fetch(self) -> AccessToken:
        """One token request, uncached; OidcTokenError says why it failed (one line, no secret)."""
        self.requests += 1
        url = self.settings.token_url
        try:
            with self._opener.open(self._request(), timeout=self.timeout) as answer:
                body = answer.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            raise OidcTokenError(f"OIDC token endpoint {url} refused client id {self.settings.client_id!r}: "
                                 f"HTTP {error.code}{self._oauth_error(error)}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise OidcTokenError(f"OIDC token endpoint {url} cannot be reached: {self._hide(str(reason))}"
                                 f"{' (https.ca.location?)' if isinstance(reason, ssl.SSLError) else ''}") from None
        return self._parse(body)

    def _request(self) -> urllib.request.Request:
        form = {"grant_type": "client_credentials", **({"scope": self.settings.scope} if self.settings.scope else {})}
        basic = base64.b64encode(f"{self.settings.client_id}:{self.settings.client_secret}".encode()).decode()
        return urllib.request.Request(self.settings.token_url, data=urlencode(form).encode(), method="POST", headers={
            "Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json", "User-Agent": _user_agent()})

    def _oauth_error(self, error: urllib.error.HTTPError) -> str:
        """The RFC 6749 ``error`` (and description) of a refusal, when the body has them."""
        try:
            body = json.loads(error.read(MAX_RESPONSE_BYTES))
        except (ValueError, OSError):
            return ""
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            return ""
        description = body.get("error_description")
        detail = f" ({description[:200]})" if isinstance(description, str) and description else ""
        return " " + self._hide(f"{body['error'][:100]}{detail}")

    def _hide(self, text: str) -> str:
        secret = self.settings.client_secret
        return " ".join(text.replace(secret, "***").split())  # one line

    def _parse(self, body: bytes) -> AccessToken:
        where = f"OIDC token endpoint {self.settings.token_url}"
        if len(body) > MAX_RESPONSE_BYTES:
            raise OidcTokenError(f"{where}: answer larger than {MAX_RESPONSE_BYTES} bytes")
        try:
            answer = json.loads(body)
        except ValueError:
            raise OidcTokenError(f"{where}: the answer is not JSON") from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise OidcTokenError(f"{where}: the answer has no access_token")
        token_type = answer.get("token_type", "Bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise OidcTokenError(f"{where}: token_type must be Bearer, got {str(token_type)[:32]!r}")
        lifetime = _lifetime(answer.get("expires_in"), token)
        if lifetime is None:
            raise OidcTokenError(f"{where}: the answer says neither expires_in nor (in a JWT) exp")
        return AccessToken(token, lifetime)


def _lifetime(expires_in: object, token: str) -> float | None:
    """Seconds the token lives: ``expires_in``, else the JWT's ``exp`` less now; None when neither says."""
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        return float(expires_in)
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool) or exp <= time.time():
        return None
    return float(exp) - time.time()


def check_token_endpoint(config: KafkaConfig) -> None:
    """At start-up, with OAUTHBEARER: one token request, so that a refusing or unreachable token
    endpoint is named as such (OidcTokenError) instead of the brokers refusing the client."""
    settings = config.oidc()
    if settings is None:
        return
    try:
        OidcTokenSource(settings).fetch()
    except OidcTokenError as error:
        where = f" (configuration {config.source})" if config.source else ""
        raise OidcTokenError(f"{error}{where}") from None

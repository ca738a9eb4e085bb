"""SASL/OAUTHBEARER with OIDC client credentials: the properties, the token source against a real
(test) token endpoint over HTTPS, caching and renewal, failures in one line without secrets, and the
worker's Faust credentials."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
from collections.abc import Iterator

import jwt
import pytest
from faust.auth import OAuthCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from processors.kafka.config import KafkaConfig, KafkaConfigError, OidcSettings, parse_properties
from processors.kafka.faust_auth import OidcTokenProvider, faust_broker_options
from processors.kafka.oidc import RETRY_AFTER_S, OidcTokenError, OidcTokenSource, check_token_endpoint
from tests.kafka.oidc_provider import AUDIENCE, Client, OidcProvider
from tests.kafka.tls import TlsFiles, make_tls_files

SECRET = "the-client-secret=with-equals"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("oidc-tls"))


@pytest.fixture(scope="module")
def provider(tls: TlsFiles) -> Iterator[OidcProvider]:
    with OidcProvider(tls, {"patchgate": Client(SECRET, lifetime_s=100)}) as provider:
        yield provider


def oauth_properties(token_url: str, **extra: str) -> dict[str, str]:
    return {"security.protocol": "SASL_SSL", "sasl.mechanisms": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": "patchgate", "sasl.oauthbearer.client.secret": SECRET,
            "sasl.oauthbearer.token.endpoint.url": token_url, **extra}


def text(properties: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in properties.items())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the properties ------------------------------------------------------------------------------

def test_oidc_properties_become_settings(tls: TlsFiles) -> None:
    properties = parse_properties(text(oauth_properties("https://idp.example.net/oauth2/token", **{
        "sasl.oauthbearer.scope": "kafka.read kafka.write", "https.ca.location": str(tls.ca),
        "sasl.oauthbearer.extensions": "logicalCluster=lkc-1,identityPoolId=pool-Ab"})))
    settings = KafkaConfig("kafka:9094", properties, "client.properties").oidc()
    assert settings == OidcSettings(client_id="patchgate", client_secret=SECRET,
                                    token_url="https://idp.example.net/oauth2/token", scope="kafka.read kafka.write",
                                    extensions={"logicalCluster": "lkc-1", "identityPoolId": "pool-Ab"},
                                    ca_file=str(tls.ca))
    assert SECRET not in repr(settings) and SECRET not in repr(KafkaConfig("kafka:9094", properties))
    assert KafkaConfig("kafka:9094", {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                                      "sasl.username": "u", "sasl.password": "p"}).oidc() is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/token", "http://localhost/token", "http://[::1]:9/t"])
def test_plain_http_is_accepted_to_loopback_only(url: str) -> None:
    assert parse_properties(text(oauth_properties(url)))["sasl.oauthbearer.token.endpoint.url"] == url


@pytest.mark.parametrize(("changes", "message"), [
    ({"sasl.oauthbearer.method": None},
     "client.conf: sasl.mechanisms=OAUTHBEARER needs sasl.oauthbearer.method=oidc (OIDC client credentials); "
     "unsecured JWTs (librdkafka's default method) are refused"),
    ({"sasl.oauthbearer.method": "default", "sasl.oauthbearer.config": "principal=admin"},
     "needs sasl.oauthbearer.method=oidc"),
    ({"sasl.oauthbearer.config": "principal=admin"}, "sasl.oauthbearer.config configures unsecured JWTs"),
    ({"sasl.oauthbearer.grant.type": "urn:ietf:params:oauth:grant-type:jwt-bearer"},
     "sasl.oauthbearer.grant.type: only client_credentials is supported"),
    ({"sasl.oauthbearer.client.secret": None},
     "sasl.oauthbearer.client.secret is required with sasl.oauthbearer.method=oidc"),
    ({"sasl.oauthbearer.token.endpoint.url": None}, "sasl.oauthbearer.token.endpoint.url is required"),
    ({"sasl.oauthbearer.token.endpoint.url": "http://idp.example.net/token"},
     "sasl.oauthbearer.token.endpoint.url: must be https:// (http:// only to a loopback address"),
    ({"sasl.oauthbearer.token.endpoint.url": "http://10.0.0.1/token"}, "must be https://"),
    ({"sasl.oauthbearer.token.endpoint.url": "ftp://idp.example.net/token"}, "must be an https:// URL"),
    ({"sasl.oauthbearer.token.endpoint.url": "https:///token"}, "must be an https:// URL"),
    ({"sasl.oauthbearer.token.endpoint.url": "https://idp.example.net:99999/token"}, "not a URL"),
    ({"sasl.oauthbearer.token.endpoint.url": "https://patchgate:pw@idp.example.net/token"},
     "must not carry credentials"),
    ({"sasl.oauthbearer.extensions": "logicalCluster"}, "sasl.oauthbearer.extensions: expected key=value"),
    ({"sasl.oauthbearer.extensions": "auth=x"}, "expected key=value"),
    ({"sasl.oauthbearer.extensions": "pool-id=x"}, "expected key=value"),
    ({"sasl.oauthbearer.extensions": "a=b c"}, "expected key=value"),
    ({"https.ca.location": "/nonexistent/idp-ca.pem"}, "https.ca.location: not a readable file"),
])
def test_unsupported_or_unsafe_oauthbearer_properties_are_refused(changes: dict[str, str | None],
                                                                   message: str) -> None:
    properties: dict[str, str] = oauth_properties("https://idp.example.net/token")
    for key, value in changes.items():
        if value is None:
            del properties[key]
        else:
            properties[key] = value
    with pytest.raises(KafkaConfigError) as error:
        parse_properties(text(properties), "client.conf")
    assert message in str(error.value) and SECRET not in str(error.value)


# -- the token source ----------------------------------------------------------------------------

def source(provider: OidcProvider, tls: TlsFiles, clock: FakeClock | None = None, **extra: str) -> OidcTokenSource:
    properties = oauth_properties(provider.token_url, **{"https.ca.location": str(tls.ca), **extra})
    settings = KafkaConfig("kafka:9094", properties).oidc()
    assert settings is not None
    return OidcTokenSource(settings) if clock is None else OidcTokenSource(settings, clock=clock)


def test_a_token_is_fetched_over_https_cached_and_renewed_at_80_percent(provider: OidcProvider,
                                                                          tls: TlsFiles) -> None:
    clock = FakeClock()
    tokens = source(provider, tls, clock, **{"sasl.oauthbearer.scope": "kafka"})
    before = len(provider.requests)
    token = tokens.token()
    claims = jwt.decode(token, provider.key.public_key(), algorithms=["RS256"], audience=AUDIENCE)
    assert claims["sub"] == "patchgate" and claims["scope"] == "kafka"
    request = provider.requests[-1]
    assert request.granted and request.user_agent.startswith("patchgate") and request.scope == "kafka"
    clock.now += 79  # lifetime 100 s: kept until 80 s
    assert tokens.token() == token and tokens.requests == 1 and len(provider.requests) == before + 1
    clock.now += 1
    assert tokens.token() == provider.requests[-1].token and tokens.requests == 2


def test_a_wrong_secret_is_one_line_naming_the_endpoint_without_the_secret(provider: OidcProvider,
                                                                             tls: TlsFiles) -> None:
    clock = FakeClock()
    wrong = "wrong-secret-value"
    tokens = source(provider, tls, clock, **{"sasl.oauthbearer.client.secret": wrong})
    with pytest.raises(OidcTokenError) as error:
        tokens.token()
    assert str(error.value) == (f"OIDC token endpoint {provider.token_url} refused client id 'patchgate': "
                                "HTTP 401 invalid_client (client authentication failed)")
    # a client reconnecting in a loop does not hammer the endpoint: the failure is repeated for a while
    clock.now += RETRY_AFTER_S - 0.1
    with pytest.raises(OidcTokenError):
        tokens.token()
    assert tokens.requests == 1
    clock.now += 0.1
    with pytest.raises(OidcTokenError):
        tokens.token()
    assert tokens.requests == 2


def test_an_unknown_ca_is_named(provider: OidcProvider) -> None:
    settings = KafkaConfig("kafka:9094", oauth_properties(provider.token_url)).oidc()  # system CAs only
    assert settings is not None
    with pytest.raises(OidcTokenError) as error:
        OidcTokenSource(settings).token()
    assert "cannot be reached: " in str(error.value) and "CERTIFICATE_VERIFY_FAILED" in str(error.value)
    assert str(error.value).endswith(" (https.ca.location?)")


def test_an_endpoint_that_is_down_or_silent_is_named_within_the_timeout() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = KafkaConfig("kafka:9094", oauth_properties(f"http://127.0.0.1:{port}/token")).oidc()
    assert settings is not None
    with pytest.raises(OidcTokenError, match=rf"^OIDC token endpoint http://127.0.0.1:{port}/token cannot be "
                                             r"reached: .*Connection refused"):
        OidcTokenSource(settings).fetch()
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/token"
        settings = KafkaConfig("kafka:9094", oauth_properties(url)).oidc()
        assert settings is not None
        with pytest.raises(OidcTokenError, match=r"cannot be reached: timed out"):
            OidcTokenSource(settings, timeout=0.5).fetch()


def test_the_current_token_is_used_while_renewal_fails(provider: OidcProvider, tls: TlsFiles,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    tokens = source(provider, tls, clock)
    token = tokens.token()
    clock.now += 90  # renewal due, token valid for 10 s more
    provider.clients["patchgate"] = Client("rotated-secret", lifetime_s=100)
    try:
        with caplog.at_level(logging.WARNING, "patchgate.kafka.oidc"):
            assert tokens.token() == token
        assert "could not renew the OAUTHBEARER token, the current one stays valid for 10s" in caplog.text
        assert SECRET not in caplog.text and token not in caplog.text
        clock.now += 10  # expired: the failure comes through
        with pytest.raises(OidcTokenError, match="HTTP 401"):
            tokens.token()
    finally:
        provider.clients["patchgate"] = Client(SECRET, lifetime_s=100)


def test_concurrent_callers_share_one_request(provider: OidcProvider, tls: TlsFiles) -> None:
    tokens = source(provider, tls)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(tokens.token())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 8 and len(set(results)) == 1 and tokens.requests == 1


@pytest.mark.parametrize(("answer", "message"), [
    (b"<html>", "the answer is not JSON"),
    (b'{"token_type": "Bearer", "expires_in": 60}', "the answer has no access_token"),
    (b'{"access_token": "abc", "token_type": "mac", "expires_in": 60}', "token_type must be Bearer, got 'mac'"),
    (b'{"access_token": "not-a-jwt"}', "the answer says neither expires_in nor (in a JWT) exp"),
])
def test_nonsense_from_the_endpoint_is_named(answer: bytes, message: str) -> None:
    settings = OidcSettings(client_id="c", client_secret="s", token_url="http://127.0.0.1:1/token")
    expected = "^" + re.escape(f"OIDC token endpoint http://127.0.0.1:1/token: {message}")
    with pytest.raises(OidcTokenError, match=expected):
        OidcTokenSource(settings)._parse(answer)


def test_without_expires_in_the_jwt_exp_says_the_lifetime(provider: OidcProvider) -> None:
    settings = OidcSettings(client_id="c", client_secret="s", token_url="http://127.0.0.1:1/token")
    token = provider.issue("c", None, 600)
    parsed = OidcTokenSource(settings)._parse(f'{{"access_token": "{token}"}}'.encode())
    assert parsed.value == token and 590 < parsed.lifetime_s <= 600


def test_the_start_up_check_names_the_configuration(provider: OidcProvider, tls: TlsFiles) -> None:
    good = oauth_properties(provider.token_url, **{"https.ca.location": str(tls.ca)})
    check_token_endpoint(KafkaConfig("kafka:9094", good, "client.properties"))
    check_token_endpoint(KafkaConfig("kafka:9094", {}))  # no OAUTHBEARER: nothing to check
    wrong = {**good, "sasl.oauthbearer.client.secret": "nope-nope"}
    with pytest.raises(OidcTokenError, match=r"HTTP 401 invalid_client .* \(configuration client.properties\)$"):
        check_token_endpoint(KafkaConfig("kafka:9094", wrong, "client.properties"))


# -- the worker's Faust (aiokafka) clients --------------------------------------------------------

def test_faust_gets_oauth_credentials_with_a_working_provider(provider: OidcProvider, tls: TlsFiles) -> None:
    properties = oauth_properties(provider.token_url, **{
        "https.ca.location": str(tls.ca), "ssl.ca.location": str(tls.ca),
        "sasl.oauthbearer.extensions": "logicalCluster=lkc-1"})
    credentials = faust_broker_options(KafkaConfig("kafka:9094", properties, "client.properties")).credentials
    assert isinstance(credentials, OAuthCredentials) and credentials.protocol.value == "SASL_SSL"
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "OAUTHBEARER"
    token_provider = auth["sasl_oauth_token_provider"]
    assert isinstance(token_provider, OidcTokenProvider)
    token = asyncio.run(token_provider.token())
    assert jwt.decode(token, provider.key.public_key(), algorithms=["RS256"], audience=AUDIENCE)["sub"] == "patchgate"
    assert token_provider.extensions() == {"logicalCluster": "lkc-1"}
    assert SECRET not in repr(credentials)


def test_sasl_plaintext_oauthbearer_has_no_tls_context(provider: OidcProvider) -> None:
    properties = {**oauth_properties(provider.plain_token_url), "security.protocol": "SASL_PLAINTEXT"}
    credentials = faust_broker_options(KafkaConfig("kafka:9092", properties)).credentials
    assert isinstance(credentials, OAuthCredentials) and credentials.protocol.value == "SASL_PLAINTEXT"
    assert credentials.ssl_context is None


def test_the_worker_refuses_gssapi_and_other_oauthbearer_properties_by_name() -> None:
    with pytest.raises(KafkaConfigError, match=re.escape("sasl.mechanisms=GSSAPI: the worker's Faust clients support "
                                                         "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER")):
        faust_broker_options(KafkaConfig("kafka:9092", {"security.protocol": "SASL_SSL", "sasl.mechanisms": "GSSAPI"}))
    properties = {**oauth_properties("https://idp.example.net/token"), "sasl.oauthbearer.sub.claim.name": "azp"}
    with pytest.raises(KafkaConfigError, match=r"sasl\.oauthbearer\.sub\.claim\.name: cannot be applied"):
        faust_broker_options(KafkaConfig("kafka:9092", properties, "client.properties"))

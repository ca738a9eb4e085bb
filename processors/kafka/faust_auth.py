"""The Kafka configuration as Faust sees it: ``broker_credentials`` and client id for the worker's
Faust (aiokafka) consumer and producer.

Faust's clients are not librdkafka: only the properties below have an aiokafka meaning. A
properties file with any other key is refused when the worker starts (naming the key), rather than
applied to the librdkafka clients and silently ignored by the Faust ones.

======================================  =================================================
Property                                Faust / aiokafka
======================================  =================================================
bootstrap.servers                       the broker URLs (``PATCHGATE_KAFKA_BOOTSTRAP`` wins)
security.protocol                       ``SASLCredentials`` (SASL_*) or ``SSLCredentials``
sasl.mechanisms                         PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER
sasl.username, sasl.password            ``SASLCredentials``
sasl.oauthbearer.method=oidc,           ``OAuthCredentials`` with a :class:`OidcTokenProvider`
sasl.oauthbearer.client.id,             (:mod:`processors.kafka.oidc`: client-credentials
sasl.oauthbearer.client.secret,         grant; ``extensions`` go with every token)
sasl.oauthbearer.token.endpoint.url,
sasl.oauthbearer.scope,
sasl.oauthbearer.extensions,
sasl.oauthbearer.grant.type
https.ca.location                       CA file for the token endpoint's certificate
ssl.ca.location                         CA file of the ``ssl.SSLContext``
ssl.certificate.location,               client certificate chain of the context
ssl.key.location, ssl.key.password
ssl.endpoint.identification.algorithm   ``none``: the context checks no host name
client.id                               Faust's ``broker_client_id``
======================================  =================================================
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from aiokafka.abc import AbstractTokenProvider
from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from processors.kafka.config import PASSWORD_MECHANISMS, KafkaConfig, KafkaConfigError
from processors.kafka.oidc import OidcTokenSource

FAUST_PROPERTIES = frozenset({
    "bootstrap.servers", "security.protocol", "sasl.mechanisms", "sasl.username", "sasl.password",
    "ssl.ca.location", "ssl.certificate.location", "ssl.key.location", "ssl.key.password",
    "ssl.endpoint.identification.algorithm", "client.id", "sasl.oauthbearer.method", "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.secret", "sasl.oauthbearer.token.endpoint.url", "sasl.oauthbearer.scope",
    "sasl.oauthbearer.extensions", "sasl.oauthbearer.grant.type", "https.ca.location",
})
FAUST_MECHANISMS = (*PASSWORD_MECHANISMS, "OAUTHBEARER")


@dataclass(frozen=True, slots=True)
class FaustBrokerOptions:
    credentials: CredentialsT | None
    client_id: str | None


def faust_broker_options(config: KafkaConfig) -> FaustBrokerOptions:
    """Faust's ``broker_credentials`` and client id; KafkaConfigError names what cannot be mapped."""
    where = config.source or "Kafka configuration"
    unmapped = sorted(set(config.properties) - FAUST_PROPERTIES)
    if unmapped:
        raise KafkaConfigError(f"{where}: {', '.join(unmapped)}: cannot be applied to the worker's Faust "
                               f"(aiokafka) clients; the worker understands {', '.join(sorted(FAUST_PROPERTIES))}")
    return FaustBrokerOptions(_credentials(config, where), config.properties.get("client.id"))


def _credentials(config: KafkaConfig, where: str) -> CredentialsT | None:
    protocol = config.security_protocol
    context = ssl_context(config, where) if protocol in ("ssl", "sasl_ssl") else None
    if protocol.startswith("sasl"):
        mechanism = config.properties.get("sasl.mechanisms", "GSSAPI").upper()
        if mechanism not in FAUST_MECHANISMS:
            raise KafkaConfigError(f"{where}: sasl.mechanisms={mechanism}: the worker's Faust clients support "
                                   f"{', '.join(FAUST_MECHANISMS)}")
        oidc = config.oidc()
        if oidc is not None:
            return OAuthCredentials(oauth_cb=OidcTokenProvider(OidcTokenSource(oidc)), ssl_context=context)
        return SASLCredentials(username=config.properties["sasl.username"],
                               password=config.properties["sasl.password"], ssl_context=context,
                               mechanism=mechanism)
    if context is not None:
        return SSLCredentials(context)
    return None


class OidcTokenProvider(AbstractTokenProvider):
    """aiokafka's token provider over an :class:`OidcTokenSource`: the blocking request runs in the
    loop's default executor, so the event loop never waits on the identity provider."""

    def __init__(self, source: OidcTokenSource) -> None:
        self.source = source

    async def token(self) -> str:
        return await asyncio.get_running_loop().run_in_executor(None, self.source.token)

    def extensions(self) -> dict[str, str]:
        return dict(self.source.settings.extensions)


def ssl_context(config: KafkaConfig, where: str = "Kafka configuration") -> ssl.SSLContext:
    """A client TLS context from the ``ssl.*`` properties (system CAs when no ``ssl.ca.location``)."""
    properties = config.properties
    try:
        context = ssl.create_default_context(cafile=properties.get("ssl.ca.location"))
    except (ssl.SSLError, OSError) as error:
        raise KafkaConfigError(f"{where}: ssl.ca.location: not a usable CA file: {error}") from None
    if properties.get("ssl.endpoint.identification.algorithm", "https").lower() == "none":
        context.check_hostname = False
    certificate, key = properties.get("ssl.certificate.location"), properties.get("ssl.key.location")
    if (certificate is None) != (key is None):
        raise KafkaConfigError(f"{where}: ssl.certificate.location and ssl.key.location go together")
    if certificate is not None:
        try:
            context.load_cert_chain(certificate, key, properties.get("ssl.key.password"))
        except (ssl.SSLError, OSError):
            raise KafkaConfigError(f"{where}: ssl.certificate.location / ssl.key.location: cannot load the "
                                   "client certificate and key (wrong ssl.key.password?)") from None
    return context

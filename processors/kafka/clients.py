"""The only place patchgate constructs librdkafka clients (producer, consumer, admin client).

Every client starts from one :class:`~processors.kafka.config.KafkaConfig` (bootstrap servers and
the client properties file) with the component's own settings on top. librdkafka refuses an unknown
property or a bad value when the client is built; that becomes a :class:`KafkaConfigError` naming the
property and the properties file, with any secret value redacted.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from processors.errors import PatchgateError
from processors.kafka.config import KafkaConfig, KafkaConfigError, redact
from processors.kafka.oidc import check_token_endpoint

Client = TypeVar("Client", Producer, Consumer, AdminClient)


def build(factory: Callable[[dict[str, Any]], Client], config: KafkaConfig,
          own: Mapping[str, Any] | None = None) -> Client:
    """``factory(config merged with own)``; a configuration librdkafka refuses raises KafkaConfigError."""
    merged = config.client_config(own)
    try:
        return factory(merged)
    except (KafkaException, ValueError, TypeError) as error:
        where = f" (from {config.source})" if config.source else ""
        raise KafkaConfigError(f"Kafka client configuration{where}: {redact(_reason(error), merged)}") from None


def _reason(error: Exception) -> str:
    if isinstance(error, KafkaException) and error.args and hasattr(error.args[0], "str"):
        return str(error.args[0].str())
    return str(error)


def _with_logger(own: Mapping[str, Any] | None, logger: logging.Logger | None) -> dict[str, Any]:
    settings = dict(own or {})
    if logger is not None:
        settings["logger"] = logger
    return settings


def producer(config: KafkaConfig, own: Mapping[str, Any] | None = None,
             logger: logging.Logger | None = None) -> Producer:
    return build(Producer, config, _with_logger(own, logger))


def consumer(config: KafkaConfig, own: Mapping[str, Any] | None = None,
             logger: logging.Logger | None = None) -> Consumer:
    return build(Consumer, config, _with_logger(own, logger))


def admin(config: KafkaConfig, own: Mapping[str, Any] | None = None,
          logger: logging.Logger | None = None) -> AdminClient:
    return build(AdminClient, config, _with_logger(own, logger))


class KafkaUnreachable(PatchgateError, RuntimeError):
    """The brokers refused the client's credentials or TLS, or did not answer in time."""


class KafkaRefused(KafkaUnreachable):
    """The brokers refused the client's credentials or TLS: retrying will not help."""


REFUSALS = ("_AUTHENTICATION", "_SSL", "SASL_AUTHENTICATION_FAILED", "TOPIC_AUTHORIZATION_FAILED",
            "CLUSTER_AUTHORIZATION_FAILED")
TLS_ALERT = "SSL alert number"  # librdkafka's text for an alert the peer sent (42: bad certificate)


def check_connection(config: KafkaConfig, timeout: float = 30.0) -> None:
    """Ask the brokers for metadata; fail fast with the broker's reason when they refuse the client.

    For start-up: a wrong password or CA ends the process with one clear message instead of a
    client that retries forever in the background. With OAUTHBEARER the token endpoint is asked
    first, so that its refusal is reported as its own (:class:`~processors.kafka.oidc.OidcTokenError`).
    """
    check_token_endpoint(config)
    errors: deque[Any] = deque(maxlen=64)  # the latest errors: enough to find a refusal among them
    client = admin(config, {"error_cb": errors.append, "log_level": 0})
    deadline = time.monotonic() + timeout
    where = f" (configuration {config.source})" if config.source else ""
    while True:
        try:
            client.list_topics(timeout=1.0)
            return
        except KafkaException as error:
            errors.append(error.args[0] if error.args else error)
        client.poll(0)
        refused = [reason for reason in (refusal(e, config) for e in errors) if reason is not None]
        if refused:
            raise KafkaRefused(f"Kafka at {config.bootstrap} refused the client{where}: {refused[0]}")
        if time.monotonic() >= deadline:
            reason = redact(_reason_text(errors[-1]), config.properties)
            raise KafkaUnreachable(f"Kafka at {config.bootstrap} did not answer within {timeout:.0f}s{where}: "
                                   f"{reason}")


class RefusalWatch:
    """A librdkafka ``error_cb``: logs the client's errors, and when the brokers refuse its credentials
    or TLS remembers why (``reason``) and calls ``on_refused`` (from the thread that polled the client).

    For components that start and work on while Kafka is away but must not run on with a
    configuration that can never work.
    """

    def __init__(self, config: KafkaConfig, logger: logging.Logger,
                 on_refused: Callable[[], object] | None = None) -> None:
        self.config = config
        self.logger = logger
        self.on_refused = on_refused
        self.reason: str | None = None

    def __call__(self, error: Any) -> None:
        reason = refusal(error, self.config)
        if reason is None:
            self.logger.warning("Kafka client error: %s", redact(_reason_text(error), self.config.properties))
            return
        if self.reason is None:
            self.logger.error("Kafka refused the client: %s", reason)
        self.reason = reason
        if self.on_refused is not None:
            self.on_refused()

    def message(self) -> str:
        where = f" (configuration {self.config.source})" if self.config.source else ""
        return f"Kafka at {self.config.bootstrap} refused the client{where}: {self.reason}"


def refusal(error: Any, config: KafkaConfig) -> str | None:
    """The reason, secrets redacted, when a client error says the brokers refused the client; else None.

    Besides authentication and TLS errors, a transport error carrying a TLS alert from the broker:
    with TLS 1.3 a broker that requires a client certificate rejects a client without one only
    after the handshake, on the first request.
    """
    name = getattr(error, "name", lambda: "")()
    text = _reason_text(error)
    if name not in REFUSALS and not (name == "_TRANSPORT" and TLS_ALERT in text):
        return None
    return redact(text, config.properties)


def _reason_text(error: Any) -> str:
    return str(error.str()) if hasattr(error, "str") else str(error)

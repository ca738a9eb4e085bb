"""Which librdkafka client errors mean the brokers refused the client (start-up ends) and which are transient."""

from __future__ import annotations

from confluent_kafka import KafkaError

from processors.kafka.clients import refusal
from processors.kafka.config import KafkaConfig

CONFIG = KafkaConfig("127.0.0.1:9093", {"security.protocol": "SSL"})


def test_a_tls_alert_from_the_broker_is_a_refusal() -> None:
    text = ("ssl://127.0.0.1:9093/bootstrap: Receive failed: error:0A000412:SSL routines::ssl/tls alert bad "
            "certificate: SSL alert number 42 (after 0ms in state APIVERSION_QUERY)")
    assert refusal(KafkaError(KafkaError._TRANSPORT, text), CONFIG) == text


def test_a_lost_connection_is_not_a_refusal() -> None:
    text = "127.0.0.1:9093/bootstrap: Connect to ipv4#127.0.0.1:9093 failed: Connection refused"
    assert refusal(KafkaError(KafkaError._TRANSPORT, text), CONFIG) is None


def test_an_authentication_failure_is_a_refusal() -> None:
    assert refusal(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error"), CONFIG) is not None

"""The Kafka client properties file: parsing, validation, merging, and secrets kept out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.kafka import clients
from processors.kafka.config import KafkaConfig, KafkaConfigError, load_properties, parse_properties
from processors.settings import Settings, SettingsError

SASL = """\
# patchgate's Kafka client
! a Java-style comment
   bootstrap.servers = kafka-1:9094,kafka-2:9094

security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.username =patchgate
sasl.password= pa=ss word=
"""


def test_comments_whitespace_and_equals_signs_in_values() -> None:
    assert parse_properties(SASL) == {
        "bootstrap.servers": "kafka-1:9094,kafka-2:9094", "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",  # sasl.mechanism is accepted for librdkafka's name
        "sasl.username": "patchgate", "sasl.password": "pa=ss word=",
    }


@pytest.mark.parametrize(("text", "message"), [
    ("client.id=a\nclient.id=b\n", "client.conf: line 2: client.id is given twice (first on line 1)"),
    ("sasl.mechanism=PLAIN\nsasl.mechanisms=PLAIN\n", "line 2: sasl.mechanisms is given twice"),
    ("just-a-word\n", "client.conf: line 1: expected key=value"),
    ("Bad Key=1\n", "line 1: 'Bad Key' is not a property name"),
    ("client.id=\n", "line 1: client.id has no value"),
    ("security.protocol=TLS\n", "security.protocol: must be one of plaintext, ssl, sasl_plaintext, sasl_ssl, "
                                "got 'TLS'"),
    ("security.protocol=SASL_SSL\nsasl.mechanisms=DIGEST\n", "sasl.mechanisms: must be one of PLAIN"),
    ("security.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\nsasl.username=u\n",
     "sasl.password is required with sasl.mechanisms=PLAIN"),
    ("ssl.ca.location=/nonexistent/ca.pem\n", "ssl.ca.location: not a readable file: /nonexistent/ca.pem"),
    ("ssl.endpoint.identification.algorithm=dns\n", "ssl.endpoint.identification.algorithm: must be one of"),
])
def test_bad_files_are_refused_naming_line_or_property(text: str, message: str) -> None:
    with pytest.raises(KafkaConfigError) as error:
        parse_properties(text, "client.conf")
    assert message in str(error.value)


def test_a_line_that_is_not_key_value_is_not_echoed() -> None:
    """Someone may have pasted a bare password; the error says where, not what."""
    with pytest.raises(KafkaConfigError) as error:
        parse_properties("sasl.username=u\nhunter2-the-password\n", "client.conf")
    assert "hunter2" not in str(error.value) and "line 2" in str(error.value)


def test_unknown_keys_pass_through_and_librdkafka_names_a_bad_one() -> None:
    config = KafkaConfig("127.0.0.1:1", parse_properties("socket.keepalive.enable=true\nno.such.property=1\n"))
    assert config.client_config({"acks": "all"}) == {
        "socket.keepalive.enable": "true", "no.such.property": "1", "bootstrap.servers": "127.0.0.1:1", "acks": "all"}
    with pytest.raises(KafkaConfigError, match=r'No such configuration property: "no\.such\.property"'):
        clients.producer(config)


def test_the_components_own_settings_win_over_the_file() -> None:
    config = KafkaConfig("env:9092", {"bootstrap.servers": "file:9092", "client.id": "file", "linger.ms": "50"})
    merged = config.client_config({"client.id": "own"})
    assert merged["bootstrap.servers"] == "env:9092" and merged["client.id"] == "own" and merged["linger.ms"] == "50"


def test_secrets_never_show_in_repr_or_errors(tmp_path: Path) -> None:
    secret, key_secret = "s3cr3t-sasl-password", "s3cr3t-key-password"
    properties = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN", "sasl.username": "u",
                  "sasl.password": secret, "ssl.key.password": key_secret, "sasl.oauthbearer.client.secret": "x1y2z3"}
    config = KafkaConfig("127.0.0.1:1", properties, "client.conf")
    shown = repr(config) + str(config.redacted())
    assert secret not in shown and key_secret not in shown and "x1y2z3" not in shown and "***" in shown
    # librdkafka refuses a value: the message names the property and the file ...
    with pytest.raises(KafkaConfigError) as error:
        clients.producer(KafkaConfig("127.0.0.1:1", {**properties, "message.timeout.ms": "soon"}, "client.conf"))
    assert 'for configuration property "message.timeout.ms"' in str(error.value)
    assert "client.conf" in str(error.value) and secret not in str(error.value)
    # ... and hides any secret it quotes
    with pytest.raises(KafkaConfigError) as error:
        clients.producer(KafkaConfig("127.0.0.1:1", {**properties, "sasl.mechanisms": secret}, "client.conf"))
    assert secret not in str(error.value) and "Unsupported SASL mechanism: ***" in str(error.value)
    with pytest.raises(KafkaConfigError) as error:
        parse_properties(f"security.protocol={secret}\n")
    assert "security.protocol" in str(error.value)
    with pytest.raises(KafkaConfigError) as error:
        parse_properties(f"security.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\nsasl.username=u\nsasl.password={secret}\n"
                         "sasl.password=again\n")
    assert secret not in str(error.value)


def test_settings_read_the_file_and_name_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(SASL)
    settings = Settings.from_env({"PATCHGATE_KAFKA_CONFIG": str(path)})
    assert settings.kafka_bootstrap == "kafka-1:9094,kafka-2:9094"  # from the file: no variable set
    assert settings.kafka.properties["sasl.username"] == "patchgate" and settings.kafka.source == str(path)
    assert "pa=ss" not in repr(settings)
    explicit = Settings.from_env({"PATCHGATE_KAFKA_CONFIG": str(path), "PATCHGATE_KAFKA_BOOTSTRAP": "env:9092"})
    assert explicit.kafka.client_config()["bootstrap.servers"] == "env:9092"
    path.write_text("client.id=a\nclient.id=b\n")
    with pytest.raises(SettingsError, match=r"^PATCHGATE_KAFKA_CONFIG: .*client.properties: line 2: client.id"):
        Settings.from_env({"PATCHGATE_KAFKA_CONFIG": str(path)})
    with pytest.raises(SettingsError, match=r"PATCHGATE_KAFKA_CONFIG: .*cannot read"):
        Settings.from_env({"PATCHGATE_KAFKA_CONFIG": str(tmp_path / "missing.properties")})


def test_a_huge_or_binary_file_is_refused(tmp_path: Path) -> None:
    huge, binary = tmp_path / "huge", tmp_path / "binary"
    huge.write_text("# x\n" * 20_000)
    binary.write_bytes(b"client.id=\xff\xfe\n")
    with pytest.raises(KafkaConfigError, match="larger than 65536 bytes"):
        load_properties(huge)
    with pytest.raises(KafkaConfigError, match="not UTF-8"):
        load_properties(binary)

"""An Apache Kafka with one secured client listener (SASL_SSL or SSL) next to the PLAINTEXT one the
test itself uses to set the broker up (users, topics), served with a certificate from a test CA."""

from __future__ import annotations

from pathlib import Path

from processors.devservices.apache_kafka import ApacheKafkaBroker
from processors.devservices.base import free_port
from tests.kafka.tls import TlsFiles


class SecuredListenerBroker(ApacheKafkaBroker):
    """``protocol`` (``SASL_SSL`` or ``SSL``) on ``secured_bootstrap``; ``listener_properties`` are set
    for that listener only (``listener.name.<protocol>.`` is prefixed)."""

    def __init__(self, tls: TlsFiles, protocol: str, listener_properties: dict[str, str]) -> None:
        super().__init__(partitions=4)
        self.tls = tls
        self.protocol = protocol
        self.secured_port = free_port()
        self.secured_bootstrap = f"127.0.0.1:{self.secured_port}"
        self.listener_properties = listener_properties

    def server_properties(self, log_dir: Path) -> str:
        name = self.protocol
        prefix = f"listener.name.{name.lower()}."
        extra = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},{name}://127.0.0.1:{self.secured_port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},{name}://127.0.0.1:{self.secured_port}",
            "listener.security.protocol.map": f"PLAINTEXT:PLAINTEXT,{name}:{name},CONTROLLER:PLAINTEXT",
            f"{prefix}ssl.keystore.type": "PEM",
            f"{prefix}ssl.keystore.location": str(self.tls.server_keystore),
            **{prefix + key: value for key, value in self.listener_properties.items()},
        }
        return super().server_properties(log_dir) + "".join(f"{key}={value}\n" for key, value in extra.items())

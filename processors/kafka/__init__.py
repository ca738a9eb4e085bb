"""Kafka I/O: the only package that constructs librdkafka clients.

- :mod:`processors.kafka.config`: the one Kafka configuration (bootstrap servers and the client
  properties file ``PATCHGATE_KAFKA_CONFIG``), parsed, validated, secrets redacted.
- :mod:`processors.kafka.clients`: producer, consumer and admin client construction from it.
- :mod:`processors.kafka.topics`: topic names and specs, creation and checks.
- :mod:`processors.kafka.delivery`: producing with awaitable acknowledgements, reading back what
  was published (outbox recovery).
- :mod:`processors.kafka.lag`: the consumer group's lag.
- :mod:`processors.kafka.commands`: operator command publication (``publish_pause``).
- :mod:`processors.kafka.logs`: librdkafka's log through Python logging, repeats summarised.
- :mod:`processors.kafka.faust_auth`: the same configuration as Faust's ``broker_credentials``.
- :mod:`processors.kafka.oidc`: SASL/OAUTHBEARER access tokens from an OIDC token endpoint (client
  credentials) for the Faust clients, and the start-up check of that endpoint.

Submodules are imported on use: importing the package loads neither confluent-kafka nor Faust.
"""

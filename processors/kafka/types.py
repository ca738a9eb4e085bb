"""The confluent-kafka types the rest of patchgate handles (records, positions, errors, clients).

Re-exported here so that only :mod:`processors.kafka` imports the client library: a component that
reads records or commits offsets names these, and builds its clients with :mod:`processors.kafka.clients`.
"""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

PARTITION_EOF = KafkaError._PARTITION_EOF  # the error code of "reached the end of a partition" events

__all__ = ["OFFSET_BEGINNING", "PARTITION_EOF", "AdminClient", "Consumer", "KafkaError", "KafkaException", "Message",
           "Producer", "TopicPartition"]

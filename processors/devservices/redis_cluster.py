"""A throwaway Redis Cluster on loopback: three masters (no replicas), every slot assigned.

Each node is a :class:`~processors.devservices.redis_server.RedisServer` with cluster mode on, its
client and cluster-bus ports free ports, its ``nodes.conf`` in its own temp folder; ``redis-cli
--cluster create`` assigns the slots. :attr:`RedisCluster.url` is the ``redis+cluster://`` URL of
:mod:`processors.state.connection`. :meth:`close` stops the nodes and deletes their folders.
"""

from __future__ import annotations

import shutil
import subprocess

from processors.devservices.base import ServiceUnavailable, free_port
from processors.devservices.redis_server import RedisServer

MASTERS = 3
NODE_TIMEOUT_MS = 2000


def cluster_ok(port: int) -> bool:
    """Whether the node on ``port`` sees every slot served (``cluster_state:ok``)."""
    import redis

    try:
        info = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5).execute_command("CLUSTER INFO")
    except redis.RedisError:
        return False
    if isinstance(info, dict):  # redis-py parses CLUSTER INFO into fields
        return str(info.get("cluster_state")) == "ok"
    return "cluster_state:ok" in (info.decode() if isinstance(info, bytes) else str(info))


class RedisCluster:
    """``masters`` cluster-enabled Redis servers joined into one cluster by ``redis-cli``."""

    def __init__(self, masters: int = MASTERS) -> None:
        self.nodes = [RedisServer(name=f"redis-cluster-{index}", extra_args=[
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", str(free_port()),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS)]) for index in range(masters)]
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise ServiceUnavailable("redis-cli is needed to create a Redis Cluster: apt-get install redis-tools")
        created = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{node.port}" for node in self.nodes), "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout, check=False)
        if created.returncode != 0:
            raise ServiceUnavailable(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
        for node in self.nodes:
            assert node._process is not None
            node._process.wait_ready(lambda port=node.port: cluster_ok(port), timeout)  # type: ignore[misc]

    def close(self) -> None:
        for node in self.nodes:
            node.close()

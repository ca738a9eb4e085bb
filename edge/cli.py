"""``patchgate edge milter|policy|cache-dump``: run the edge components.

Settings come from the command line or, when an option is not given, from these environment
variables:

- ``PATCHGATE_EDGE_CONFIG``: edge config file (TOML, see :mod:`edge.config`); required for
  ``milter`` and ``policy``.
- ``PATCHGATE_EDGE_KAFKA_BOOTSTRAP``: Kafka bootstrap servers (``127.0.0.1:9092``).
- ``PATCHGATE_EDGE_VERDICTS_TOPIC``: the compacted verdicts topic (``patchgate.verdicts``).
- ``PATCHGATE_EDGE_METADATA_TOPIC``: where the milter publishes metadata (``patchgate.metadata``).
- ``PATCHGATE_EDGE_MILTER_LISTEN``: comma-separated ``unix:/path`` / ``inet:host:port``
  (``unix:/run/patchgate/milter.sock``).
- ``PATCHGATE_EDGE_POLICY_LISTEN``: the same for the policy service (``policy`` command default
  ``unix:/run/patchgate/policy.sock``); when set for ``milter``, that process also serves the policy
  protocol, sharing the verdict cache and the IP -> server hints the milter learns.
- ``PATCHGATE_EDGE_POLICY_MODE``: ``postfix`` (keep connections open, default) or ``exim`` (close
  after each reply, for ``${readsocket}``).
- ``PATCHGATE_EDGE_CATCHUP_TIMEOUT``: seconds to wait for the verdict cache to catch up before
  listening anyway, failing open until it has (``30``).
- ``PATCHGATE_EDGE_PUBLISH``: ``0`` disables metadata publishing (``1``).
- ``PATCHGATE_EDGE_LOOP``: ``uvloop`` (default) or ``asyncio``: the event loop of the servers
  (see :mod:`edge.eventloop`).
- ``PATCHGATE_EDGE_LOG_LEVEL``: ``DEBUG`` / ``INFO`` / ``WARNING`` (``INFO``).
- ``PATCHGATE_EDGE_METRICS_PORT``: serve Prometheus ``/metrics`` on this port (``0``: off, the
  default); ``PATCHGATE_EDGE_METRICS_BIND``: its address (``127.0.0.1``). See :mod:`edge.prometheus`.
- ``PATCHGATE_EDGE_SOCKET_GROUP``: group that owns the Unix sockets (e.g. ``postfix``; default: the
  process's group); ``PATCHGATE_EDGE_SOCKET_MODE``: their mode (``0660``). The socket's directory
  must exist, be owned by root or this user and not be writable by others (see :mod:`edge.listeners`).
- ``PATCHGATE_EDGE_IDLE_TIMEOUT``: seconds without input before a connection is closed (milter
  ``900``, policy service ``330``: above Postfix's own limits, so Postfix closes first; ``0`` = off);
  ``PATCHGATE_EDGE_POLICY_IDLE_TIMEOUT``: the same for ``milter --policy-listen``.
- ``PATCHGATE_EDGE_MAX_CONNECTIONS``: concurrent connections per listener kind (``512``); excess
  connections are closed at once and counted.
- ``PATCHGATE_EDGE_MAX_REPLY_BUFFER``: bytes of unwritten replies per connection above which reading
  stops until the peer reads (``65536``).
- ``PATCHGATE_EDGE_MAX_HEADERS`` / ``PATCHGATE_EDGE_MAX_HEADER_BYTES``: headers the milter stores per
  message (``1000`` / ``262144``); the rest is counted, not stored.
- ``PATCHGATE_EDGE_CLOCK_OFFSET_S``: seconds added to the edge's clock (``0``). For replays and tests
  that run the processor on a scenario clock: the edge then decides, and stamps ``observed_at``, in
  the same scenario time. Never set it in production.

Once listening, the process prints one line ``patchgate edge <command> ready: ...`` to stdout (for
supervisors and tests), logs counters every ``--metrics-interval`` seconds and stops cleanly on
SIGTERM/SIGINT (listeners closed, metadata flushed for up to 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import orjson

from edge import eventloop

log = logging.getLogger("edge.cli")

ENV = "PATCHGATE_EDGE_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV + name, default)


def _clock() -> Callable[[], float]:
    """The edge's clock: wall time, shifted by PATCHGATE_EDGE_CLOCK_OFFSET_S (replays and tests only)."""
    offset = float(_env("CLOCK_OFFSET_S", "0") or 0)
    if not offset:
        return time.time
    log.warning("edge clock shifted by %.0f seconds (PATCHGATE_EDGE_CLOCK_OFFSET_S)", offset)
    return lambda: time.time() + offset


def register(subparsers: Any) -> None:
    """Add ``edge`` with its subcommands to a parent parser's subparsers."""
    edge = subparsers.add_parser("edge", help="run the edge milter / policy service / inspect the verdict cache")
    sub = edge.add_subparsers(dest="edge_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bootstrap", default=None, help=f"Kafka bootstrap ({ENV}KAFKA_BOOTSTRAP)")
        p.add_argument("--verdicts-topic", default=None, help=f"({ENV}VERDICTS_TOPIC)")
        p.add_argument("--catchup-timeout", type=float, default=None, help=f"({ENV}CATCHUP_TIMEOUT)")
        p.add_argument("--log-level", default=None, help=f"({ENV}LOG_LEVEL)")

    def observable(p: argparse.ArgumentParser) -> None:
        p.add_argument("--metrics-interval", type=float, default=60.0, help="seconds between counter log lines")
        p.add_argument("--metrics-port", type=int, default=None, help=f"Prometheus /metrics port, 0 = off "
                                                                       f"({ENV}METRICS_PORT)")
        p.add_argument("--metrics-bind", default=None, help=f"({ENV}METRICS_BIND, 127.0.0.1)")

    def bounded(p: argparse.ArgumentParser) -> None:
        p.add_argument("--socket-group", default=None, help=f"group owning the Unix sockets, e.g. postfix "
                                                            f"({ENV}SOCKET_GROUP)")
        p.add_argument("--socket-mode", default=None, help=f"Unix socket mode, octal ({ENV}SOCKET_MODE, 0660)")
        p.add_argument("--idle-timeout", type=float, default=None,
                       help=f"close connections silent this many seconds, 0 = never ({ENV}IDLE_TIMEOUT)")
        p.add_argument("--max-connections", type=int, default=None, help=f"({ENV}MAX_CONNECTIONS, 512)")
        p.add_argument("--max-reply-buffer", type=int, default=None,
                       help=f"unwritten reply bytes per connection before reading stops ({ENV}MAX_REPLY_BUFFER)")

    m = sub.add_parser("milter", help="run the milter (Postfix smtpd_milters)")
    common(m)
    m.add_argument("--config", default=None, help=f"edge config TOML ({ENV}CONFIG)")
    m.add_argument("--listen", default=None, help=f"unix:/path or inet:host:port, comma-separated ({ENV}MILTER_LISTEN)")
    m.add_argument("--policy-listen", default=None, help=f"also serve the policy protocol here ({ENV}POLICY_LISTEN)")
    m.add_argument("--policy-mode", choices=("postfix", "exim"), default=None, help=f"({ENV}POLICY_MODE)")
    m.add_argument("--metadata-topic", default=None, help=f"({ENV}METADATA_TOPIC)")
    m.add_argument("--no-publish", action="store_true", help=f"do not publish metadata ({ENV}PUBLISH=0)")
    m.add_argument("--policy-idle-timeout", type=float, default=None, help=f"({ENV}POLICY_IDLE_TIMEOUT, 330)")
    m.add_argument("--max-headers", type=int, default=None, help=f"headers stored per message ({ENV}MAX_HEADERS)")
    m.add_argument("--max-header-bytes", type=int, default=None, help=f"({ENV}MAX_HEADER_BYTES)")
    bounded(m)
    observable(m)
    m.set_defaults(handler=run_milter)

    p = sub.add_parser("policy", help="run the policy service (Postfix check_policy_service, Exim readsocket)")
    common(p)
    p.add_argument("--config", default=None, help=f"edge config TOML ({ENV}CONFIG)")
    p.add_argument("--listen", default=None, help=f"unix:/path or inet:host:port ({ENV}POLICY_LISTEN)")
    p.add_argument("--mode", choices=("postfix", "exim"), default=None, help=f"({ENV}POLICY_MODE)")
    bounded(p)
    observable(p)
    p.set_defaults(handler=run_policy)

    d = sub.add_parser("cache-dump", help="read the verdicts topic and print the verdicts an edge would hold")
    common(d)
    d.add_argument("--decide-at", type=float, default=None,
                   help="also print the decision per key at this epoch time (default: now)")
    d.set_defaults(handler=run_cache_dump)


# --- helpers -------------------------------------------------------------------------------------

def _setup_logging(level: str | None) -> None:
    lvl = (level or _env("LOG_LEVEL", "INFO") or "INFO").upper()
    logging.basicConfig(level=getattr(logging, lvl, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def parse_listen(spec: str) -> list[tuple[str, str, int]]:
    """``unix:/p``, ``/p``, ``inet:host:port`` or ``host:port`` (comma-separated) -> (kind, host/path, port)."""
    out: list[tuple[str, str, int]] = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("unix:"):
            out.append(("unix", item[5:], 0))
        elif item.startswith("/"):
            out.append(("unix", item, 0))
        else:
            if item.startswith("inet:"):
                item = item[5:]
            host, sep, port = item.rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"listen address {raw.strip()!r}: expected unix:/path or inet:host:port")
            out.append(("inet", host.strip("[]") or "127.0.0.1", int(port)))
    if not out:
        raise ValueError("no listen address given")
    return out


def _setting(args: argparse.Namespace, attr: str, env: str, default: str, kind: Callable[[str], Any]) -> Any:
    """A command-line value, else the environment variable, else ``default``; a bad value exits clearly."""
    value = getattr(args, attr, None)
    text = str(value) if value is not None else (_env(env, default) or default)
    try:
        return kind(text)
    except ValueError:
        raise SystemExit(f"edge: --{attr.replace('_', '-')} / {ENV}{env}: invalid value {text!r}") from None


def _limits(args: argparse.Namespace, idle_default: float, idle_attr: str = "idle_timeout",
            idle_env: str = "IDLE_TIMEOUT") -> Any:
    from edge.listeners import ConnectionLimits

    limits = ConnectionLimits(
        max_connections=_setting(args, "max_connections", "MAX_CONNECTIONS", "512", int),
        idle_timeout=_setting(args, idle_attr, idle_env, str(idle_default), float),
        max_reply_buffer=_setting(args, "max_reply_buffer", "MAX_REPLY_BUFFER", "65536", int),
    )
    if limits.max_connections < 1 or limits.idle_timeout < 0 or limits.max_reply_buffer < 1024:
        raise SystemExit(f"edge: connection limits out of range: {limits}")
    return limits


async def _listen(server: Any, spec: str, args: argparse.Namespace) -> list[str]:
    from edge.listeners import UnsafeSocketPath

    group = args.socket_group or _env("SOCKET_GROUP")
    mode = _setting(args, "socket_mode", "SOCKET_MODE", "0660", lambda text: int(str(text), 8))
    if mode & ~0o777:
        raise SystemExit(f"edge: socket mode {mode:o}: expected permission bits like 0660")
    bound = []
    for kind, where, port in parse_listen(spec):
        if kind == "unix":
            try:
                await server.listen_unix(where, mode=mode, group=group)
            except UnsafeSocketPath as exc:
                raise SystemExit(f"edge: {where}: {exc}") from None
            bound.append(f"unix:{where}")
        else:
            if where not in ("127.0.0.1", "::1", "localhost"):
                log.warning("listening on %s:%d beyond loopback: whoever reaches it can claim any client "
                            "and reset enforcement; restrict it with a firewall", where, port)
            actual = await server.listen_tcp(where, port)
            bound.append(f"inet:{where}:{actual}")
    return bound


def _start_cache(args: argparse.Namespace) -> Any:
    from edge.verdict_cache import DEFAULT_TOPIC, VerdictCache

    bootstrap = args.bootstrap or _env("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    topic = args.verdicts_topic or _env("VERDICTS_TOPIC", DEFAULT_TOPIC)
    timeout = args.catchup_timeout if args.catchup_timeout is not None else float(_env("CATCHUP_TIMEOUT", "30") or 30)
    cache = VerdictCache(str(bootstrap), topic=str(topic))
    cache.start()
    if cache.wait_caught_up(timeout):
        log.info("verdict cache caught up: %d verdicts from %s", len(cache), topic)
    else:
        log.warning("verdict cache not caught up after %.0fs; serving anyway and failing open until it is",
                    timeout)
    return cache


def _load_config(args: argparse.Namespace) -> Any:
    from edge.config import ConfigError, load_config

    path = args.config or _env("CONFIG")
    if not path:
        raise SystemExit(f"edge: no config file: pass --config or set {ENV}CONFIG")
    try:
        return load_config(path)
    except ConfigError as exc:
        raise SystemExit(f"edge: {exc}") from None


async def _serve(ready: str, args: argparse.Namespace, cache: Any, counters: Mapping[str, Any],
                 threads: Mapping[str, Any]) -> None:
    """Print the ready line, export ``counters`` (component -> counters dataclass), log them every
    ``--metrics-interval`` seconds and once more at SIGTERM/SIGINT, then return."""
    port = args.metrics_port if args.metrics_port is not None else int(_env("METRICS_PORT", "0") or 0)
    exporter = None
    if port:
        from edge.prometheus import EdgeCollector
        from processors.metrics import REGISTRY, start_metrics_server

        REGISTRY.register(EdgeCollector(cache, counters, threads))
        exporter = start_metrics_server(port, addr=args.metrics_bind or _env("METRICS_BIND", "127.0.0.1") or "")
        ready += f" metrics=http://{exporter.server_address[0]}:{exporter.server_port}/metrics"
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(ready, flush=True)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.metrics_interval)
            snapshot = {"verdicts": len(cache), **{name: asdict(c) for name, c in counters.items()}}
            log.info("metrics %s", orjson.dumps(snapshot).decode())
    finally:
        if exporter is not None:
            exporter.shutdown()
            exporter.server_close()


# --- commands ------------------------------------------------------------------------------------

def run_milter(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    config = _load_config(args)
    from edge.milter.app import PatchgateMilter
    from edge.milter.server import MilterServer
    from edge.policy.server import PolicyServer, PolicyService
    from edge.publisher import DEFAULT_TOPIC as METADATA_TOPIC
    from edge.publisher import MetadataPublisher

    cache = _start_cache(args)
    publisher = None
    if not args.no_publish and _env("PUBLISH", "1") != "0":
        publisher = MetadataPublisher(
            str(args.bootstrap or _env("KAFKA_BOOTSTRAP", "127.0.0.1:9092")),
            topic=str(args.metadata_topic or _env("METADATA_TOPIC", METADATA_TOPIC)),
        )
        publisher.start()
    app = PatchgateMilter(config, cache, publisher, clock=_clock())
    milter = MilterServer(app, limits=_limits(args, 900.0),
                          max_headers=_setting(args, "max_headers", "MAX_HEADERS", "1000", int),
                          max_header_bytes=_setting(args, "max_header_bytes", "MAX_HEADER_BYTES", "262144", int))
    policy_spec = args.policy_listen or _env("POLICY_LISTEN")
    mode = args.policy_mode or _env("POLICY_MODE", "postfix")
    policy = (PolicyServer(PolicyService(config, cache, clock=_clock()), close_after_reply=mode == "exim",
                           limits=_limits(args, 330.0, "policy_idle_timeout", "POLICY_IDLE_TIMEOUT"))
              if policy_spec else None)

    async def main() -> None:
        bound = await _listen(milter, args.listen or _env("MILTER_LISTEN", "unix:/run/patchgate/milter.sock") or "",
                              args)
        if policy is not None and policy_spec:
            bound += [f"policy={b}" for b in await _listen(policy, policy_spec, args)]

        counters: dict[str, Any] = {"milter": app.metrics, "server": milter.metrics, "cache": cache.metrics,
                                    "milter_listener": milter.listener_metrics}
        threads: dict[str, Any] = {"verdict-follower": cache.thread}
        if publisher is not None:
            counters["publisher"] = publisher.metrics
            threads["publisher"] = publisher.thread
        if policy is not None:
            counters["policy"] = policy.service.metrics
            counters["policy_listener"] = policy.listener_metrics
        try:
            await _serve(f"patchgate edge milter ready: {' '.join(bound)} caught_up={cache.caught_up}",
                         args, cache, counters, threads)
        finally:
            await milter.close()
            if policy is not None:
                await policy.close()

    try:
        eventloop.run(main())
    finally:
        if publisher is not None:
            publisher.stop(5.0)
        cache.stop()
    return 0


def run_policy(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    config = _load_config(args)
    from edge.policy.server import PolicyServer, PolicyService

    cache = _start_cache(args)
    mode = args.mode or _env("POLICY_MODE", "postfix")
    server = PolicyServer(PolicyService(config, cache, clock=_clock()), close_after_reply=mode == "exim",
                          limits=_limits(args, 330.0))

    async def main() -> None:
        bound = await _listen(server, args.listen or _env("POLICY_LISTEN", "unix:/run/patchgate/policy.sock") or "",
                              args)
        try:
            await _serve(f"patchgate edge policy ready: {' '.join(bound)} mode={mode} caught_up={cache.caught_up}",
                         args, cache, {"policy": server.service.metrics, "cache": cache.metrics,
                                       "policy_listener": server.listener_metrics},
                         {"verdict-follower": cache.thread})
        finally:
            await server.close()

    try:
        eventloop.run(main())
    finally:
        cache.stop()
    return 0


def run_cache_dump(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level or "WARNING")
    cache = _start_cache(args)
    try:
        now = args.decide_at if args.decide_at is not None else time.time()
        for record in cache.snapshot():
            d = cache.decide(record["server_key"], now)
            line = {"server_key": record["server_key"], "sequence": record.get("sequence"),
                    "stage": record.get("stage"), "decision": d.action, "reason": d.reason, "verdict": record}
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
        sys.stderr.write(orjson.dumps({"caught_up": cache.caught_up, "verdicts": len(cache),
                                       "metrics": asdict(cache.metrics)}).decode() + "\n")
        return 0 if cache.caught_up else 1
    finally:
        cache.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m edge.cli edge milter ...`` (same as ``patchgate edge ...``)."""
    parser = argparse.ArgumentParser(prog="patchgate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

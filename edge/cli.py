"""``patchgate edge milter|policy|cache-dump``: run the edge components.

Settings: :class:`edge.settings.EdgeSettings`, one frozen, validated object built from the command line
and, for every option not given, its ``PATCHGATE_*`` environment variable (the table is in
:mod:`edge.settings`). A bad value ends the process with a message naming the variable.

Once listening, the process prints one line ``patchgate edge <command> ready: ...`` to stdout (for
supervisors and tests), logs counters every ``--metrics-interval`` seconds and stops cleanly on
SIGTERM/SIGINT (listeners closed, metadata flushed for up to 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from edge import eventloop

if TYPE_CHECKING:
    from edge.settings import EdgeSettings, EdgeTopics

log = logging.getLogger("edge.cli")

ENV = "PATCHGATE_EDGE_"

# command-line option (argparse dest) -> EdgeSettings field; for --listen and --mode see _overrides
OPTIONS = {
    "bootstrap": "kafka_bootstrap", "verdicts_topic": "topic_verdicts", "metadata_topic": "topic_metadata",
    "catchup_timeout": "edge_catchup_timeout", "log_level": "edge_log_level", "config": "edge_config",
    "metrics_port": "edge_metrics_port", "metrics_bind": "edge_metrics_bind",
    "socket_group": "edge_socket_group", "socket_mode": "edge_socket_mode", "idle_timeout": "edge_idle_timeout",
    "policy_idle_timeout": "edge_policy_idle_timeout", "max_connections": "edge_max_connections",
    "max_reply_buffer": "edge_max_reply_buffer", "max_headers": "edge_max_headers",
    "max_header_bytes": "edge_max_header_bytes", "policy_listen": "edge_policy_listen",
    "policy_mode": "edge_policy_mode", "mode": "edge_policy_mode",
}


def edge_settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> EdgeSettings:
    """The settings of this run: options given on the command line, else the environment."""
    from edge.settings import EdgeSettings
    from processors.settings import component_settings

    return component_settings(EdgeSettings, "edge", environ, **_overrides(args))


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values = {name: getattr(args, option) for option, name in OPTIONS.items()
              if getattr(args, option, None) is not None}
    command = getattr(args, "edge_command", None)
    if getattr(args, "listen", None) is not None:
        values["edge_policy_listen" if command == "policy" else "edge_milter_listen"] = args.listen
    if getattr(args, "no_publish", False):
        values["edge_publish"] = False
    if "edge_config" in values:
        values["edge_config"] = Path(values["edge_config"])
    return values


def _clock(settings: EdgeSettings) -> Callable[[], float]:
    """The edge's clock: wall time, shifted by PATCHGATE_EDGE_CLOCK_OFFSET_S (replays and tests only)."""
    offset = settings.edge_clock_offset_s
    if not offset:
        return time.time
    log.warning("edge clock shifted by %.0f seconds (PATCHGATE_EDGE_CLOCK_OFFSET_S)", offset)
    return lambda: time.time() + offset


def register(subparsers: Any) -> None:
    """Add ``edge`` with its subcommands to a parent parser's subparsers."""
    edge = subparsers.add_parser("edge", help="run the edge milter / policy service / inspect the verdict cache")
    sub = edge.add_subparsers(dest="edge_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--bootstrap", default=None, help="Kafka bootstrap (PATCHGATE_KAFKA_BOOTSTRAP)")
        p.add_argument("--verdicts-topic", default=None, help="(PATCHGATE_TOPIC_VERDICTS)")
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
    m.add_argument("--metadata-topic", default=None, help="(PATCHGATE_TOPIC_METADATA)")
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
    d.add_argument("--config", default=None,
                   help=f"per-tenant topic mode: the verdicts of this edge config's tenant only; without a "
                        f"config, every tenant's ({ENV}CONFIG)")
    d.add_argument("--decide-at", type=float, default=None,
                   help="also print the decision per key at this epoch time (default: now)")
    d.set_defaults(handler=run_cache_dump)


# --- helpers -------------------------------------------------------------------------------------

def _setup_logging(settings: EdgeSettings, component: str = "edge") -> None:
    from processors.logsetup import LogFormatError, setup_logging

    try:
        setup_logging(component, settings.edge_log_level)
    except LogFormatError as error:
        raise SystemExit(f"edge: {error}") from None


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


def _limits(settings: EdgeSettings, idle_timeout: float) -> Any:
    from edge.listeners import ConnectionLimits

    return ConnectionLimits(max_connections=settings.edge_max_connections, idle_timeout=idle_timeout,
                            max_reply_buffer=settings.edge_max_reply_buffer)


async def _listen(server: Any, spec: str, settings: EdgeSettings) -> list[str]:
    from edge.listeners import UnsafeSocketPath

    group = settings.edge_socket_group or None
    bound = []
    for kind, where, port in parse_listen(spec):
        if kind == "unix":
            try:
                await server.listen_unix(where, mode=settings.socket_mode, group=group)
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


def _topics(settings: EdgeSettings, config: Any) -> EdgeTopics:
    """The edge's topics; in the per-tenant mode those of its config's one tenant (else exit 2)."""
    from processors.settings import SettingsError

    tenants = None if config is None else {connector.tenant_id for connector in config.connectors}
    try:
        return settings.edge_topics(tenants)
    except SettingsError as error:
        print(f"edge: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _start_cache(settings: EdgeSettings, topics: EdgeTopics) -> Any:
    from edge.verdict_cache import VerdictCache

    timeout = settings.edge_catchup_timeout
    if topics.verdicts_pattern:
        cache = VerdictCache(settings.kafka, topic_pattern=topics.verdicts)
    else:
        cache = VerdictCache(settings.kafka, topic=topics.verdicts, tenant=topics.tenant)
    cache.start()
    caught_up = cache.wait_settled(timeout)
    if cache.refused is not None:  # wrong credentials or TLS: a configuration error, not an outage
        cache.stop()
        print(f"edge: {cache.refusal.message()}", file=sys.stderr)
        raise SystemExit(2)
    if caught_up:
        log.info("verdict cache caught up: %d verdicts from %s", len(cache), topics.verdicts)
    else:
        log.warning("verdict cache not caught up after %.0fs; serving anyway and failing open until it is",
                    timeout)
    return cache


def _load_config(settings: EdgeSettings) -> Any:
    from edge.config import ConfigError, load_config

    if settings.edge_config is None:
        raise SystemExit(f"edge: no config file: pass --config or set {ENV}CONFIG")
    try:
        return load_config(settings.edge_config)
    except ConfigError as exc:
        raise SystemExit(f"edge: {exc}") from None


async def _serve(ready: str, args: argparse.Namespace, settings: EdgeSettings, cache: Any,
                 counters: Mapping[str, Any], threads: Mapping[str, Any]) -> None:
    """Print the ready line, export ``counters`` (component -> counters dataclass), log them every
    ``--metrics-interval`` seconds and once more at SIGTERM/SIGINT, then return."""
    from edge.prometheus import EdgeCollector, watch_edge
    from processors.metrics import REGISTRY
    from processors.probes import Probes

    probes = Probes(settings.edge_metrics_bind, settings.edge_metrics_port).start()
    if probes.server is not None:
        REGISTRY.register(EdgeCollector(cache, counters, threads, topic=cache.topic))
        ready += f" metrics={probes.server.url}/metrics"
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    probes.spawn(stop)
    watch_edge(probes, cache, threads, stop)
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
        await probes.aclose()


# --- commands ------------------------------------------------------------------------------------

def run_milter(args: argparse.Namespace) -> int:
    settings = edge_settings(args)
    _setup_logging(settings, "edge-milter")
    config = _load_config(settings)
    from edge.milter.app import PatchgateMilter
    from edge.milter.server import MilterServer
    from edge.policy.server import PolicyServer, PolicyService
    from edge.publisher import MetadataPublisher
    from edge.settings import MILTER_IDLE_S

    topics = _topics(settings, config)
    cache = _start_cache(settings, topics)
    publisher = None
    if settings.edge_publish:
        publisher = MetadataPublisher(settings.kafka, topic=topics.metadata)
        publisher.start()
    app = PatchgateMilter(config, cache, publisher, clock=_clock(settings))
    milter = MilterServer(app, limits=_limits(settings, settings.idle_timeout(MILTER_IDLE_S)),
                          max_headers=settings.edge_max_headers, max_header_bytes=settings.edge_max_header_bytes)
    policy_spec = settings.edge_policy_listen
    policy = (PolicyServer(PolicyService(config, cache, clock=_clock(settings)),
                           close_after_reply=settings.edge_policy_mode == "exim",
                           limits=_limits(settings, settings.edge_policy_idle_timeout))
              if policy_spec else None)

    async def main() -> None:
        bound = await _listen(milter, settings.edge_milter_listen, settings)
        if policy is not None and policy_spec:
            bound += [f"policy={b}" for b in await _listen(policy, policy_spec, settings)]

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
                         args, settings, cache, counters, threads)
        finally:
            await milter.close()
            if policy is not None:
                await policy.close()

    try:
        eventloop.run(main(), settings.edge_loop)
    finally:
        if publisher is not None:
            publisher.stop(5.0)
        cache.stop()
    return 0


def run_policy(args: argparse.Namespace) -> int:
    settings = edge_settings(args)
    _setup_logging(settings, "edge-policy")
    config = _load_config(settings)
    from edge.policy.server import PolicyServer, PolicyService
    from edge.settings import POLICY_IDLE_S, POLICY_LISTEN

    cache = _start_cache(settings, _topics(settings, config))
    mode = settings.edge_policy_mode
    server = PolicyServer(PolicyService(config, cache, clock=_clock(settings)), close_after_reply=mode == "exim",
                          limits=_limits(settings, settings.idle_timeout(POLICY_IDLE_S)))

    async def main() -> None:
        bound = await _listen(server, settings.edge_policy_listen or POLICY_LISTEN, settings)
        try:
            await _serve(f"patchgate edge policy ready: {' '.join(bound)} mode={mode} caught_up={cache.caught_up}",
                         args, settings, cache, {"policy": server.service.metrics, "cache": cache.metrics,
                                                 "policy_listener": server.listener_metrics},
                         {"verdict-follower": cache.thread})
        finally:
            await server.close()

    try:
        eventloop.run(main(), settings.edge_loop)
    finally:
        cache.stop()
    return 0


def run_cache_dump(args: argparse.Namespace) -> int:
    if args.log_level is None:
        args.log_level = "WARNING"
    settings = edge_settings(args)
    _setup_logging(settings)
    config = _load_config(settings) if settings.per_tenant_topics and settings.edge_config is not None else None
    cache = _start_cache(settings, _topics(settings, config))
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

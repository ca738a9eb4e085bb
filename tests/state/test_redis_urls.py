"""Redis URLs: the single-server, Cluster and Sentinel forms parse, bad ones (TLS options on plain
text, unreadable CA files, unknown parameters) get a clear error, the passwords are redacted wherever
a URL is shown, and ``rediss+sentinel://`` gives TLS and logins to the sentinels and the master."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio.sentinel import MasterNotFoundError

from processors.state.connection import PLAIN_TEXT_HINT, connect, with_hint
from processors.state.urls import RedisUrlError, check_url, parse_target, redacted


def test_a_cluster_url_names_its_seed_nodes_and_user() -> None:
    target = parse_target("rediss+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2:7001?ssl_ca_certs=/etc/ca.pem")
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (target.username, target.password, target.tls) == ("app", "p@ss", True)
    assert target.tls_options() == {"ssl": True, "ssl_ca_certs": "/etc/ca.pem"}
    assert "p@ss" not in repr(target)


def test_a_sentinel_url_names_the_master_and_the_database() -> None:
    target = parse_target("redis+sentinel://s1:26379,s2:26380/mymaster/2?sentinel_password=x")
    assert (target.nodes, target.master, target.db, target.tls) == ((("s1", 26379), ("s2", 26380)), "mymaster", 2,
                                                                    False)
    assert parse_target("redis+sentinel://s1:26379/mymaster").db == 0


@pytest.mark.parametrize(("url", "message"), [
    ("http://x:1", "must start with redis://"),
    ("redis+cluster://", "no host:port"),
    ("redis+cluster://user:secret@host", "is not host:port"),
    ("redis+sentinel://s1:26379", "/<master-name>"),
    ("redis+sentinel://user:secret@s1:26379/m/db", "/<master-name>"),
])
def test_bad_urls_say_what_is_wrong_without_the_password(url: str, message: str) -> None:
    with pytest.raises(RedisUrlError) as caught:
        check_url(url)
    assert message in str(caught.value) and "secret" not in str(caught.value)


def test_redaction_keeps_everything_but_the_password() -> None:
    assert redacted("rediss://app:secret@h:6380/0?ssl_ca_certs=/ca") == "rediss://app:***@h:6380/0?ssl_ca_certs=/ca"
    assert redacted("redis://h:6379/0") == "redis://h:6379/0"
    assert redacted("redis://:secret@h:6379") == "redis://:***@h:6379"
    assert redacted("redis+sentinel://u:secret@a:1,b:2/m") == "redis+sentinel://u:***@a:1,b:2/m"


def test_a_tls_sentinel_url_carries_the_sentinels_login_and_the_tls_options() -> None:
    target = parse_target("rediss+sentinel://app:pw@s1:26379/m/1?ssl_ca_certs=/ca.pem&sentinel_username=watch"
                          "&sentinel_password=s3cr3t")
    assert (target.tls, target.master, target.db) == (True, "m", 1)
    assert target.tls_options() == {"ssl": True, "ssl_ca_certs": "/ca.pem"}
    assert target.sentinel_login() == {"username": "watch", "password": "s3cr3t"}
    assert "s3cr3t" not in repr(target)


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel://s1:26379/m?ssl_ca_certs={ca}&sentinel_password=secret", "ssl_ca_certs is a TLS setting"),
    ("redis://:secret@h:6379/0?ssl_certfile={ca}", "ssl_certfile is a TLS setting"),
    ("rediss+sentinel://s1:26379/m?ssl_ca_certs=/nonexistent/ca.pem&sentinel_password=secret", "no readable file"),
    ("rediss://:secret@h:6380/0?ssl_keyfile={folder}", "no readable file"),
    ("rediss+sentinel://s1:26379/m?ssl_ca_cert={ca}&sentinel_password=secret", "unknown query parameter 'ssl_ca_cert'"),
    ("rediss+cluster://u:secret@h:7000?sentinel_password=x", "unknown query parameter 'sentinel_password'"),
])
def test_tls_and_query_mistakes_are_one_clear_error_without_passwords(url: str, message: str, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here: the client reads it\n")
    with pytest.raises(RedisUrlError) as caught:
        check_url(url.format(ca=ca, folder=tmp_path))
    assert message in str(caught.value) and "secret" not in str(caught.value) and "\n" not in str(caught.value)


def test_a_tls_sentinel_url_with_readable_files_passes(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x\n")
    check_url(f"rediss+sentinel://u:p@s1:26379,s2:26379/m/0?ssl_ca_certs={ca}&sentinel_username=w"
              f"&sentinel_password=p&wait_replicas=1")


def test_redaction_masks_the_sentinel_password() -> None:
    assert redacted("rediss+sentinel://u:secret@a:1/m?ssl_ca_certs=/ca&sentinel_password=s3cret&x=1") == (
        "rediss+sentinel://u:***@a:1/m?ssl_ca_certs=/ca&sentinel_password=***&x=1")


@pytest.mark.parametrize("blocking", [False, True])
def test_rediss_sentinel_gives_tls_and_logins_to_the_sentinels_and_the_master(blocking: bool, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x\n")
    client = connect(f"rediss+sentinel://app:pw@s1:26379,s2:26380/m/2?ssl_ca_certs={ca}&sentinel_username=watch"
                     "&sentinel_password=sp", 1.5, 0.5, blocking=blocking)
    pool = client.connection_pool
    assert "SSL" in pool.connection_class.__name__ and pool.connection_class.__name__.startswith("SentinelManaged")
    assert {name: pool.connection_kwargs[name] for name in ("username", "password", "ssl_ca_certs", "db")} == {
        "username": "app", "password": "pw", "ssl_ca_certs": str(ca), "db": 2}
    sentinels = pool.sentinel_manager.sentinels
    assert [repr(sentinel) for sentinel in sentinels] == ["sentinel s1:26379", "sentinel s2:26380"]
    for sentinel in sentinels:
        options = sentinel.connection_pool.connection_kwargs
        assert "SSL" in sentinel.connection_pool.connection_class.__name__
        assert (options["username"], options["password"], options["ssl_ca_certs"]) == ("watch", "sp", str(ca))
        assert (options["socket_timeout"], options["socket_connect_timeout"]) == (1.5, 0.5)


def test_no_master_errors_are_one_line_with_a_hint_only_after_plain_text() -> None:
    error = MasterNotFoundError("No master found for 'm' : sentinel a:1 - ConnectionError: reset\n more")
    one_line = "No master found for 'm' : sentinel a:1 - ConnectionError: reset more"
    assert str(with_hint(error, plain_text=True)) == f"{one_line} {PLAIN_TEXT_HINT}"
    assert str(with_hint(error, plain_text=False)) == one_line
    assert isinstance(with_hint(error, plain_text=False), MasterNotFoundError)

"""Redis URLs: the single-server, Cluster and Sentinel forms parse, bad ones get a clear error, and
the password is redacted wherever a URL is shown."""

from __future__ import annotations

import pytest

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

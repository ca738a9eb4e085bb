"""Redis over TLS as an ACL user: a wrong password, a missing CA or plain text fail with a clear
error that never shows the password (the working path is the state contract suite's ``tls`` run)."""

from __future__ import annotations

from typing import Any

import pytest

from processors.settings import Settings, SettingsError
from tests.redis_ha.refusal import ping_error

pytestmark = pytest.mark.integration




def test_a_wrong_password_is_refused_without_showing_it(redis_tls_server: Any) -> None:
    wrong = "not-the-" + redis_tls_server.password
    error = ping_error(redis_tls_server.url.replace(redis_tls_server.password, wrong))
    assert "password" in error.lower() and wrong not in error and redis_tls_server.password not in error


def test_without_the_ca_the_server_certificate_is_refused(redis_tls_server: Any) -> None:
    error = ping_error(redis_tls_server.url.partition("?")[0])
    assert "certificate verify failed" in error and redis_tls_server.password not in error


def test_plain_text_does_not_reach_a_tls_only_server(redis_tls_server: Any) -> None:
    error = ping_error(redis_tls_server.url.replace("rediss://", "redis://", 1).partition("?")[0])
    assert redis_tls_server.password not in error


def test_the_settings_never_show_the_redis_password(redis_tls_server: Any) -> None:
    settings = Settings.from_env({"PATCHGATE_REDIS_URL": redis_tls_server.url})
    assert settings.redis_url == redis_tls_server.url
    assert redis_tls_server.password not in repr(settings)
    bad = redis_tls_server.url.replace("rediss://", "rediss+cluster://", 1).replace(f":{redis_tls_server.port}", "")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"PATCHGATE_REDIS_URL": bad})
    assert "PATCHGATE_REDIS_URL" in str(caught.value) and redis_tls_server.password not in str(caught.value)
    assert "***" in str(caught.value)

"""WebRTC settings: the page and its API need a token on any address other than loopback."""

from __future__ import annotations

import pytest
from phoneagent.edge.webrtc.settings import WebRtcSettings
from phoneagent.runtime.settings import SettingsError, load


@pytest.mark.parametrize("host", ["10.0.0.5", "192.168.1.20", "0.0.0.0", "::", "2001:db8::1"])
def test_a_reachable_host_needs_a_token(host: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(WebRtcSettings, {"PA_WEB_HOST": host})
    assert "PA_WEB_TOKEN" in str(err.value) and host in str(err.value)
    with pytest.raises(SettingsError):
        load(WebRtcSettings, {"PA_WEB_HOST": host, "PA_WEB_TOKEN": "   "})
    assert load(WebRtcSettings, {"PA_WEB_HOST": host, "PA_WEB_TOKEN": "s3cret"}).token == "s3cret"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1"])
def test_loopback_needs_no_token(host: str) -> None:
    assert load(WebRtcSettings, {"PA_WEB_HOST": host}).token == ""


def test_a_host_name_is_refused() -> None:
    with pytest.raises(SettingsError) as err:
        load(WebRtcSettings, {"PA_WEB_HOST": "example.com", "PA_WEB_TOKEN": "s3cret"})
    assert "PA_WEB_HOST" in str(err.value)

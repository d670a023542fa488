"""The operator console over HTTP (a real records service on a real nats-server): the token is
required for every page and data endpoint, the login form's session cookie, the calls list's
filters, one call's data, the compliance view and its CSV export, and the actions."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from phoneagent.records.console.auth import COOKIE, TokenAuth
from phoneagent.records.service import RecordsService
from phoneagent.records.settings import RecordsServiceSettings
from phoneagent.runtime.settings import SettingsError, load
from support.console import SAMPLE, TOKEN, console_service, publish_sample, record_where
from support.records_sample_call import publish_start

BEARER = {"Authorization": f"Bearer {TOKEN}"}
Served = tuple[str, RecordsService]  # the console's URL, and the service


@pytest.fixture
async def console(fresh_nats: str, tmp_path: Path) -> AsyncIterator[Served]:
    async with console_service(fresh_nats, tmp_path) as svc:
        await publish_sample(svc.bus, tmp_path)
        await record_where(svc, SAMPLE, lambda r: r.ended and bool(r.recording))
        yield svc.console_url.rstrip("/"), svc


async def test_without_the_token_pages_and_data_are_refused(console: Served) -> None:
    url, _ = console
    async with aiohttp.ClientSession() as http:
        for path in ("/calls", f"/calls/{SAMPLE}", "/compliance"):
            async with http.get(url + path, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"].startswith("/login?next="), path
        for path in (
            "/api/calls",
            f"/api/calls/{SAMPLE}",
            "/api/audit",
            f"/calls/{SAMPLE}/recording",
            "/compliance.csv",
        ):
            async with http.get(url + path) as r:
                assert r.status == 401, path
                assert SAMPLE not in await r.text()
        async with http.get(url + "/api/calls", headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with http.post(url + f"/calls/{SAMPLE}/hangup") as r:
            assert r.status == 401
        async with http.get(url + "/api/calls", headers=BEARER) as r:
            assert r.status == 200 and (await r.json())["calls"][0]["call_id"] == SAMPLE


def jar() -> aiohttp.CookieJar:
    return aiohttp.CookieJar(unsafe=True)  # keeps cookies of an IP address (127.0.0.1)


async def test_login_sets_a_strict_httponly_session_cookie(console: Served) -> None:
    url, _ = console
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        async with http.post(url + "/login", data={"token": "nope", "next": "/calls"}) as r:
            assert r.status == 401 and "not the API token" in await r.text()
        async with http.post(
            url + "/login", data={"token": TOKEN, "next": "//evil.example/x"}, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/calls"  # never another origin
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        async with http.get(url + "/api/calls") as r:  # the session cookie lets it in
            assert r.status == 200
        async with http.post(url + "/logout", allow_redirects=False) as r:
            assert r.status == 303
        async with http.get(url + "/api/calls") as r:
            assert r.status == 401
    # A forged or expired session is refused.
    auth = TokenAuth(TOKEN)
    expired = auth.new_session(now=time.time() - auth.session_s - 1)
    forged = TokenAuth("another-token").new_session()
    async with aiohttp.ClientSession() as http:
        for value in (expired, forged, "9999999999.00"):
            async with http.get(url + "/api/calls", cookies={COOKIE: value}) as r:
                assert r.status == 401


async def test_calls_list_filters_and_one_calls_data(console: Served) -> None:
    url, _ = console
    async with aiohttp.ClientSession(headers=BEARER) as http:
        async with http.get(url + "/api/calls", params={"outcome": "booked", "direction": "inbound"}) as r:
            assert [c["call_id"] for c in (await r.json())["calls"]] == [SAMPLE]
        for params in (
            {"outcome": "voicemail"},
            {"direction": "outbound"},
            {"agent": "other"},
            {"date": "2001-01-01"},
        ):
            async with http.get(url + "/api/calls", params=params) as r:
                assert (await r.json())["calls"] == [], params
        async with http.get(url + "/api/calls", params={"outcome": "nonsense"}) as r:
            assert r.status == 400
        async with http.get(url + f"/api/calls/{SAMPLE}") as r:
            call = await r.json()
        assert call["from_number"] == "…67" and call["outcome"] == "booked"
        answer = call["transcript"][2]
        assert (
            answer["interrupted"]
            and answer["heard"] == "Sure. Tuesday"
            and answer["cut"] == " at nine is booked."
        )
        assert answer["at_s"] == pytest.approx(2.75, abs=0.01)  # first packet 2850 ms, recording from 100 ms
        hops = call["waterfall"]["turns"][0]["hops_ms"]
        assert hops["mouth_to_ear"] == 900 and hops["tts_first_audio->first_rtp"] == 50
        assert call["waterfall"]["stats"]["mouth_to_ear"] == {"n": 1, "p50": 900.0, "p95": 900.0}
        assert [d["rule"] for d in call["decisions"]] == ["ai_disclosure", "one_party_notice"]
        async with http.get(url + f"/calls/{SAMPLE}/recording", headers={"Range": "bytes=0-43"}) as r:
            assert r.status == 206 and r.headers["Content-Type"] == "audio/wav"
            assert (await r.read())[:4] == b"RIFF"


async def test_compliance_filters_by_rule_and_exports_csv(console: Served) -> None:
    url, _ = console
    async with aiohttp.ClientSession(headers=BEARER) as http:
        async with http.get(url + "/api/audit", params={"since": "1d"}) as r:
            rules = {d["rule"] for d in (await r.json())["decisions"]}
        assert {"internal_dnc", "one_party_notice", "ai_disclosure"} <= rules
        async with http.get(url + "/compliance.csv", params={"rule": "internal_dnc", "since": "1d"}) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
            assert "attachment" in r.headers["Content-Disposition"]
            rows = list(csv.DictReader(io.StringIO(await r.text())))
        assert [(x["decision"], x["subject"], x["rule"]) for x in rows] == [("deny", "dial", "internal_dnc")]
        assert rows[0]["reason"] == "number is on the do-not-call list" and rows[0]["call_id"] == ""
        async with http.get(url + "/compliance", params={"subject": "recording", "since": "1d"}) as r:
            page = await r.text()
        assert "one_party_notice" in page and "do-not-call" not in page


async def test_actions_go_through_the_api_and_are_refused_cross_origin(
    console: Served,
) -> None:
    url, svc = console
    async with aiohttp.ClientSession(headers=BEARER) as http:
        # An ended call cannot be hung up (the API's own check).
        async with http.post(url + f"/calls/{SAMPLE}/hangup", headers={"Accept": "application/json"}) as r:
            assert r.status == 404 and not (await r.json())["ok"]
        await publish_start(svc.bus, "cconsolelive", time.time_ns())
        await record_where(svc, "cconsolelive", lambda r: r.started_unix_ns > 0)
        async with http.post(url + "/calls/cconsolelive/hangup", headers={"Accept": "application/json"}) as r:
            assert r.status == 200 and (await r.json())["ok"]
    async with aiohttp.ClientSession(cookie_jar=jar()) as http:
        async with http.post(url + "/login", data={"token": TOKEN, "next": "/calls"}) as r:
            assert r.status == 200
        async with http.post(
            url + "/calls/cconsolelive/hangup", headers={"Origin": "http://evil.example"}
        ) as r:
            assert r.status == 403


def test_console_off_loopback_needs_the_token() -> None:
    with pytest.raises(SettingsError, match="PA_CONSOLE_HOST"):
        load(RecordsServiceSettings, console_host="0.0.0.0", grpc_host="127.0.0.1")
    assert load(RecordsServiceSettings, console_host="0.0.0.0", api_token="t").console_host == "0.0.0.0"
    # Off, it needs neither the token nor its packages.
    assert not load(RecordsServiceSettings, console_host="0.0.0.0", console_enabled=False).console_enabled

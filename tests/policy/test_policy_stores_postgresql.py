"""The policy stores on PostgreSQL, as the chart runs them: two replicas' handles on one database
see each other's writes at once (a number one replica adds to the DNC list is refused by the
other), consent ids come back from the insert, imported lists count what they added."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from phoneagent.policy.stores import PolicyStores
from support.postgres import new_database

NOW = datetime(2026, 6, 2, 15, 0, tzinfo=UTC)


def test_two_replicas_share_the_policy_stores_on_postgresql(pg_server: str) -> None:
    url = new_database(pg_server)
    with PolicyStores(url) as a, PolicyStores(url) as b:  # the second replica migrates nothing new
        assert a.dnc.add("(415) 555-0134", "caller opt-out", NOW) == "+14155550134"
        assert b.dnc.lookup("+1 415 555 0134") is not None
        assert a.dnc.add("+14155550134", "operator", NOW + timedelta(days=1)) == "+14155550134"
        assert [e.source for e in b.dnc.entries()] == ["caller opt-out"]  # the first entry is kept

        report = b.imported_dnc.import_csv(
            "national", io.StringIO("number\n4155550101\n4155550102\n4155550101\n"), NOW
        )
        assert (report.imported, report.duplicates) == (2, 1)
        again = a.imported_dnc.import_csv("national", io.StringIO("4155550102\n4155550103\n"), NOW)
        assert (again.imported, again.duplicates) == (1, 1)
        assert a.imported_dnc.lists() == [("national", 3)]

        first = a.consent.grant("4155550101", "reminders", "web form", NOW)
        second = b.consent.grant("4155550101", "reminders", "call", NOW + timedelta(hours=1))
        assert second > first > 0
        assert b.consent.revoke("4155550101", "reminders", NOW + timedelta(days=2)) == 2

        a.attempts.record("4155550101", NOW)
        b.attempts.record("4155550101", NOW + timedelta(minutes=5))
        assert a.attempts.count("+14155550101", since=NOW) == 2
        assert b.dnc.remove("4155550134") and a.dnc.lookup("4155550134") is None

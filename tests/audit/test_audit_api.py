"""The audit API: read-only, tenant-scoped, filtered, cursor-paginated and exportable."""

from __future__ import annotations

import csv
import io
import json
import time
from urllib.parse import urlsplit

import pytest
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from controlplane import context
from controlplane.audit.export import COLUMNS
from controlplane.audit.models import AuditChain, AuditEvent
from controlplane.audit.services import audit_record
from controlplane.tenancy.choices import Role
from tests.api_mixins import TenantEndpointTests, assert_error_shape, audit_rows

LIST = "/api/v1/t/acme/audit-events/"
EXPORT = "/api/v1/t/acme/audit-events/export/"


def record(tenant, action: str = "test.event", user=None, **kwargs) -> AuditEvent:
    with context.using(tenant=tenant, user=user, token=None, system=None if user else "tests"):
        return audit_record(action=action, **kwargs)


def all_pages(client, url, params=None) -> list[dict]:
    """Follow ``next`` links to the end; returns every result in order."""
    results: list[dict] = []
    response = client.get(url, params or {})
    while True:
        assert response.status_code == 200, response.content
        body = response.json()
        results.extend(body["results"])
        if not body["next"]:
            return results
        parts = urlsplit(body["next"])
        response = client.get(f"{parts.path}?{parts.query}")


def streamed(response) -> str:
    return b"".join(response.streaming_content).decode()


class TestAuditEventsEndpoint(TenantEndpointTests):
    basename = "audit-event"
    lookup_kwarg = "seq"
    read_role = Role.VIEWER
    write_role = None
    extra_routes = {"api:audit-event-export"}

    def make_object(self, world, tenant):
        # Seq numbers are per tenant, so pad this tenant's chain past every other chain
        # (and the few events a test writes afterwards): a lookup of a foreign event's seq
        # in another tenant must then miss rather than hit that tenant's own event.
        highest = AuditChain.objects.aggregate(m=Max("last_seq"))["m"] or 0
        with context.tenant_context(tenant):
            event = audit_record(action="test.event", target_name="made by make_object")
            while event.seq <= highest + 20:
                event = audit_record(action="test.event", target_name="made by make_object")
        return event

    def lookup(self, obj):
        return str(obj.seq)

    def test_detail_shows_the_event(self, world, api):
        event = self.make_object(world, world.acme)
        response = api(world.bob, world.acme, scope="read").get(f"{LIST}{event.seq}/")
        assert response.status_code == 200
        body = response.json()
        assert body["seq"] == event.seq and body["hash"] == event.hash
        assert body["action"] == "test.event"
        assert set(body) == set(COLUMNS)

    def test_updates_and_deletes_are_not_allowed(self, world, api):
        event = self.make_object(world, world.acme)
        client = api(world.alice, world.acme)
        url = f"{LIST}{event.seq}/"
        assert_error_shape(client.patch(url, {"action": "forged"}, format="json"), 405)
        assert_error_shape(client.put(url, {"action": "forged"}, format="json"), 405)
        assert_error_shape(client.delete(url), 405)
        assert AuditEvent.objects.unscoped().get(pk=event.pk).action == "test.event"

    def test_export_route_is_the_one_covered(self):
        assert reverse("api:audit-event-export", kwargs={"tenant": "acme"}) == EXPORT


@pytest.mark.django_db
class TestFilters:
    @pytest.fixture
    def events(self, world):
        record(world.acme, "membership.create", user=world.alice, target_name="bob in Acme")
        record(world.acme, "membership.update", user=world.adam, target_name="oscar in Acme")
        record(world.acme, "membership.delete", user=world.alice, target_name="bob in Acme")
        record(world.acme, "memberships.export", user=world.alice)
        record(world.acme, "tenant.update", user=world.adam, target_name="Acme Corp")
        record(world.globex, "membership.create", user=world.charlie, target_name="bob in Globex")

    def actions(self, client, **params) -> list[str]:
        response = client.get(LIST, params)
        assert response.status_code == 200, response.content
        return [e["action"] for e in response.json()["results"]]

    def test_newest_first_and_only_this_tenant(self, world, api, events):
        client = api(world.bob, world.acme, scope="read")
        results = client.get(LIST).json()["results"]
        seqs = [e["seq"] for e in results]
        assert seqs == sorted(seqs, reverse=True) == list(range(len(seqs), 0, -1))
        assert "bob in Globex" not in [e["target_name"] for e in results]

    def test_actor(self, world, api, events):
        client = api(world.bob, world.acme, scope="read")
        assert self.actions(client, actor="ADA") == ["tenant.update", "membership.update"]
        assert self.actions(client, actor="charlie") == []
        assert self.actions(client, actor_type="user", action="membership.create") == [
            "membership.create"
        ]

    def test_action_exact(self, world, api, events):
        client = api(world.bob, world.acme, scope="read")
        assert self.actions(client, action="membership.create") == ["membership.create"]
        assert self.actions(client, action="membership") == []  # no dot: exact, not a prefix

    def test_action_prefix(self, world, api, events):
        client = api(world.bob, world.acme, scope="read")
        assert self.actions(client, action="membership.") == [
            "membership.delete",
            "membership.update",
            "membership.create",
        ]
        assert self.actions(client, action="tenant.") == ["tenant.update"]

    def test_target(self, world, api, events):
        client = api(world.bob, world.acme, scope="read")
        assert self.actions(client, target="bob in") == ["membership.delete", "membership.create"]
        assert self.actions(client, target="GLOBEX") == []  # the other tenant's never shows

    def test_since_and_until(self, world, api):
        client = api(world.bob, world.acme, scope="read")  # its token event comes first
        record(world.acme, "early.event")
        time.sleep(0.01)
        t1 = timezone.now()
        time.sleep(0.01)
        record(world.acme, "middle.event")
        time.sleep(0.01)
        t2 = timezone.now()
        time.sleep(0.01)
        record(world.acme, "late.event")
        assert self.actions(client, since=t1.isoformat()) == ["late.event", "middle.event"]
        assert self.actions(client, until=t1.isoformat()) == ["early.event", "api_token.create"]
        assert self.actions(client, since=t1.isoformat(), until=t2.isoformat()) == ["middle.event"]
        assert self.actions(client, since=timezone.now().isoformat()) == []

    def test_bad_datetime_is_400(self, world, api):
        client = api(world.bob, world.acme, scope="read")
        body = assert_error_shape(client.get(LIST, {"since": "last tuesday"}), 400, attr="since")
        assert body["type"] == "validation_error"
        assert_error_shape(client.get(LIST, {"until": "2024-13-45T99:00"}), 400, attr="until")

    def test_bad_actor_type_is_400(self, world, api):
        client = api(world.bob, world.acme, scope="read")
        assert_error_shape(client.get(LIST, {"actor_type": "robot"}), 400, attr="actor_type")


@pytest.mark.django_db
class TestPagination:
    def test_page_size_and_next_link_walk_every_event_once(self, world, api):
        client = api(world.bob, world.acme, scope="read")  # event #1
        for i in range(7):
            record(world.acme, f"page.event{i}")
        first = client.get(LIST, {"page_size": 3}).json()
        assert [e["seq"] for e in first["results"]] == [8, 7, 6]
        assert first["next"] and "cursor=" in first["next"] and "page_size=3" in first["next"]
        assert first["previous"] is None
        seqs = [e["seq"] for e in all_pages(client, LIST, {"page_size": 3})]
        assert seqs == [8, 7, 6, 5, 4, 3, 2, 1]

    def test_pages_stay_stable_when_events_arrive(self, world, api):
        client = api(world.bob, world.acme, scope="read")
        for i in range(5):
            record(world.acme, f"page.event{i}")
        first = client.get(LIST, {"page_size": 3}).json()
        record(world.acme, "arrived.later")  # newest: must not shift the next page
        parts = urlsplit(first["next"])
        second = client.get(f"{parts.path}?{parts.query}").json()
        assert [e["seq"] for e in second["results"]] == [3, 2, 1]

    def test_filters_carry_into_next_link(self, world, api):
        client = api(world.bob, world.acme, scope="read")
        for i in range(5):
            record(world.acme, "kept.event", target_name=f"k{i}")
            record(world.acme, "other.event")
        results = all_pages(client, LIST, {"page_size": 2, "action": "kept."})
        assert [e["target_name"] for e in results] == ["k4", "k3", "k2", "k1", "k0"]

    def test_page_size_is_capped(self, world, api):
        client = api(world.bob, world.acme, scope="read")
        with context.tenant_context(world.acme):
            for _ in range(205):
                audit_record(action="bulk.event")
        body = client.get(LIST, {"page_size": 1000}).json()
        assert len(body["results"]) == 200 and body["next"]

    def test_bad_cursor_is_404_in_the_error_shape(self, world, api):
        client = api(world.bob, world.acme, scope="read")
        assert_error_shape(client.get(LIST, {"cursor": "not-a-cursor"}), 404)


@pytest.mark.django_db
class TestExport:
    @pytest.fixture
    def events(self, world):
        record(world.acme, "membership.create", user=world.alice, target_name='bob, "the" viewer')
        record(
            world.acme,
            "provider.update",
            user=world.adam,
            before={"model": "a", "api_key": "sk-should-not-leak"},
            after={"model": "b"},
        )
        record(world.acme, "membership.delete", user=world.alice, target_name="bob")
        record(world.globex, "globex.secret", user=world.charlie, target_name="GLOBEX-ONLY")

    def test_jsonl_has_every_row_oldest_first(self, world, api, events):
        client = api(world.bob, world.acme, scope="read")
        expected = list(
            AuditEvent.objects.for_tenant(world.acme).order_by("seq").values_list("seq", "hash")
        )
        response = client.get(EXPORT, {"format": "jsonl"})
        assert response.status_code == 200
        assert response["Content-Type"] == "application/x-ndjson"
        disposition = response["Content-Disposition"]
        assert disposition.startswith('attachment; filename="audit-acme-')
        assert disposition.endswith('.jsonl"')
        rows = [json.loads(line) for line in streamed(response).splitlines()]
        assert all(set(row) == set(COLUMNS) for row in rows)
        exported = [(r["seq"], r["hash"]) for r in rows if r["action"] != "audit.export"]
        assert exported == expected
        assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
        provider = next(r for r in rows if r["action"] == "provider.update")
        assert provider["before"] == {"model": "a", "api_key": "[redacted]"}
        assert provider["actor_name"] == "adam"
        assert "GLOBEX-ONLY" not in json.dumps(rows) and "globex.secret" not in json.dumps(rows)

    def test_jsonl_is_the_default(self, world, api, events):
        response = api(world.bob, world.acme, scope="read").get(EXPORT)
        assert response.status_code == 200
        assert response["Content-Type"] == "application/x-ndjson"
        assert json.loads(streamed(response).splitlines()[0])["seq"] == 1

    def test_csv_has_a_header_and_every_row_oldest_first(self, world, api, events):
        client = api(world.bob, world.acme, scope="read")
        expected = list(
            AuditEvent.objects.for_tenant(world.acme).order_by("seq").values_list("seq", flat=True)
        )
        response = client.get(EXPORT, {"format": "csv"})
        assert response.status_code == 200
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"].endswith('.csv"')
        reader = csv.reader(io.StringIO(streamed(response)))
        header = next(reader)
        assert header == COLUMNS
        rows = [dict(zip(header, line, strict=True)) for line in reader]
        exported = [int(r["seq"]) for r in rows if r["action"] != "audit.export"]
        assert exported == expected
        membership = next(r for r in rows if r["action"] == "membership.create")
        assert membership["target_name"] == 'bob, "the" viewer'  # quoting survives
        provider = next(r for r in rows if r["action"] == "provider.update")
        assert json.loads(provider["before"]) == {"model": "a", "api_key": "[redacted]"}
        assert json.loads(provider["after"]) == {"model": "b"}
        assert "sk-should-not-leak" not in streamed(client.get(EXPORT, {"format": "csv"}))
        assert all(r["target_name"] != "GLOBEX-ONLY" for r in rows)

    def test_filters_apply_to_the_export(self, world, api, events):
        client = api(world.bob, world.acme, scope="read")
        response = client.get(EXPORT, {"format": "jsonl", "action": "membership."})
        rows = [json.loads(line) for line in streamed(response).splitlines()]
        assert [r["action"] for r in rows] == ["membership.create", "membership.delete"]
        response = client.get(EXPORT, {"format": "csv", "actor": "adam"})
        lines = list(csv.reader(io.StringIO(streamed(response))))
        assert len(lines) == 2 and lines[1][COLUMNS.index("action")] == "provider.update"

    def test_unknown_format_is_400_and_not_audited(self, world, api, events):
        client = api(world.bob, world.acme, scope="read")
        body = assert_error_shape(client.get(EXPORT, {"format": "xlsx"}), 400, attr="format")
        assert "jsonl" in body["errors"][0]["detail"] and "csv" in body["errors"][0]["detail"]
        assert not audit_rows(world.acme, "audit.export").exists()

    def test_bad_filter_on_export_is_400(self, world, api, events):
        client = api(world.bob, world.acme, scope="read")
        assert_error_shape(client.get(EXPORT, {"format": "csv", "since": "yesterday"}), 400)

    def test_the_export_is_itself_audited(self, world, api, events):
        client = api(world.bob, world.acme, scope="read")
        response = client.get(EXPORT, {"format": "csv", "action": "membership."})
        assert response.status_code == 200
        streamed(response)
        event = audit_rows(world.acme, "audit.export").get()
        assert event.metadata["format"] == "csv"
        assert event.metadata["filters"]["action"] == ["membership."]
        assert event.actor_user_id == world.bob.pk and event.actor_token_id is not None
        assert event.actor_name.startswith("bob (token ")
        assert not AuditEvent.objects.for_tenant(world.globex).filter(action="audit.export")

    def test_another_tenants_export_never_includes_acme(self, world, api, events):
        response = api(world.charlie, world.globex, scope="read").get(
            "/api/v1/t/globex/audit-events/export/", {"format": "jsonl"}
        )
        rows = [json.loads(line) for line in streamed(response).splitlines()]
        assert {r["action"] for r in rows} <= {"globex.secret", "api_token.create", "audit.export"}
        assert "globex.secret" in {r["action"] for r in rows}
        assert "bob" not in {r["target_name"] for r in rows}

    def test_outsider_and_anonymous_cannot_export(self, world, api, events):
        assert_error_shape(api(world.charlie, world.globex).get(EXPORT), 404)
        assert_error_shape(api().get(EXPORT), 401)
        assert not audit_rows(world.acme, "audit.export").exists()


@pytest.mark.django_db
def test_csv_export_neutralises_spreadsheet_formulas(world, api):
    from controlplane import context
    from controlplane.audit.services import audit_record

    with context.tenant_context(world.acme):
        audit_record(action="test.formula", target_type="x", target_name="=HYPERLINK(1)")
    body = b"".join(
        api(world.alice, world.acme)
        .get("/api/v1/t/acme/audit-events/export/?format=csv&action=test.formula")
        .streaming_content
    ).decode()
    assert "'=HYPERLINK(1)" in body
    assert ",=HYPERLINK" not in body

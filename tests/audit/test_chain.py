"""The hash-chained audit log: gapless per-chain seq, links, concurrency, tamper detection.

Tampering is done the way an attacker with database access would: raw SQL with the
append-only trigger bypassed (``session_replication_role = replica``, the test user is
a superuser). ``manage.py audit_verify`` must then name the first broken event.
"""

from __future__ import annotations

import io
import itertools
import threading
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, IntegrityError, connection, transaction

from controlplane import context
from controlplane.audit.hashing import event_hash, fields_of
from controlplane.audit.models import GENESIS_HASH, AuditChain, AuditEvent
from controlplane.audit.redaction import REDACTED
from controlplane.audit.services import GLOBAL_CHAIN, audit_record, chain_key
from controlplane.audit.verify import verify_all, verify_chain
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership
from controlplane.tenancy.services import membership_add
from tests.factories import TenantFactory, UserFactory

pytestmark = pytest.mark.django_db


# helpers ---------------------------------------------------------------------


def record(tenant, count: int, action: str = "test.event") -> list[AuditEvent]:
    """``count`` events in ``tenant``'s chain (None: the global chain), as a named system."""
    with context.system_context("tests", tenant=tenant):
        return [
            audit_record(action=action, target_name=f"thing {i}", after={"i": i})
            for i in range(count)
        ]


def chain_rows(key: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.unscoped().filter(chain=key).order_by("seq"))


def tamper(*statements: tuple[str, tuple]) -> None:
    """Run SQL with the append-only trigger bypassed, as someone with DB access could.

    Each statement is ``(sql, params)``. The bypass is switched back off afterwards, so the
    rest of the test runs with the trigger armed again.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute("SET LOCAL session_replication_role = origin")


def verify_command(*args: str) -> tuple[str, str]:
    """Run audit_verify; returns (stdout, stderr). Raises CommandError when broken."""
    out, err = io.StringIO(), io.StringIO()
    call_command("audit_verify", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def assert_broken_at(tenant, seq: int, reason: str) -> str:
    """audit_verify --tenant fails with exit code 1 and names event ``seq`` and ``reason``."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("audit_verify", f"--tenant={tenant.slug}", stdout=out, stderr=err)
    assert excinfo.value.returncode == 1
    assert "audit chain broken in 1 of 1 chain(s)" in str(excinfo.value)
    assert f"BROKEN at event #{seq}:" in err.getvalue(), err.getvalue()
    assert reason in err.getvalue(), err.getvalue()
    assert "OK:" not in out.getvalue()
    return err.getvalue()


@pytest.fixture
def tenant(db):
    return TenantFactory(slug="chained", name="Chained Ltd")


# the chain --------------------------------------------------------------------


class TestChainShape:
    def test_seq_is_gapless_and_each_event_links_to_the_previous(self, tenant):
        events = record(tenant, 5)
        rows = chain_rows(chain_key(tenant))
        assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
        assert [r.pk for r in rows] == [e.pk for e in events]
        assert rows[0].prev_hash == GENESIS_HASH
        for previous, current in itertools.pairwise(rows):
            assert current.prev_hash == previous.hash
        for row in rows:
            assert row.hash == event_hash(row.prev_hash, fields_of(row))
            assert len(row.hash) == 64 and row.hash != row.prev_hash
        head = AuditChain.objects.get(key=chain_key(tenant))
        assert (head.last_seq, head.last_hash) == (5, rows[-1].hash)
        assert head.tenant == tenant

    def test_each_tenant_has_its_own_chain(self, tenant):
        other = TenantFactory(slug="other-chain")
        record(tenant, 3)
        record(other, 2)
        record(tenant, 1)
        assert [r.seq for r in chain_rows(chain_key(tenant))] == [1, 2, 3, 4]
        assert [r.seq for r in chain_rows(chain_key(other))] == [1, 2]
        assert {r.tenant_id for r in chain_rows(chain_key(other))} == {other.pk}
        assert chain_rows(chain_key(other))[0].prev_hash == GENESIS_HASH

    def test_tenantless_events_go_to_the_global_chain(self, tenant):
        explicit = audit_record(action="auth.something", tenant=None)
        with context.using(tenant=None, user=None, token=None, system="worker"):
            from_context = audit_record(action="system.tick")
        with context.tenant_context(tenant):
            forced_global = audit_record(action="user.create", tenant=None)
            tenant_event = audit_record(action="tenant.thing")
        assert [e.chain for e in (explicit, from_context, forced_global)] == [GLOBAL_CHAIN] * 3
        assert [e.seq for e in (explicit, from_context, forced_global)] == [1, 2, 3]
        assert {e.tenant_id for e in (explicit, from_context, forced_global)} == {None}
        assert tenant_event.chain == chain_key(tenant) and tenant_event.seq == 1
        assert from_context.actor_name == "system:worker"
        assert AuditChain.objects.get(key=GLOBAL_CHAIN).tenant is None

    def test_actor_and_target_are_frozen_as_text(self, tenant):
        user = UserFactory(username="frozen-actor")
        with context.using(tenant=tenant, user=user, request_id="req-1", ip="10.0.0.9"):
            event = audit_record(action="thing.touch", target=user)
        assert event.actor_type == "user" and event.actor_user_id == user.pk
        assert event.actor_name == "frozen-actor"
        assert (event.target_type, event.target_id, event.target_name) == (
            "auth.user",
            str(user.pk),
            "frozen-actor",
        )
        assert (event.request_id, event.ip) == ("req-1", "10.0.0.9")

    def test_the_stored_row_hashes_to_what_was_written(self, tenant):
        """JSON round trips (dict key order, dates) must not change the hash."""
        import datetime as dt

        with context.tenant_context(tenant):
            event = audit_record(
                action="x.y",
                before={"b": 1, "a": [1, 2]},
                after={"when": dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "z": None},
                metadata={"nested": {"k": "v", "a": 1.5}},
            )
        stored = AuditEvent.objects.unscoped().get(pk=event.pk)
        assert stored.after == {"when": "2030-01-02 03:04:05+00:00", "z": None}
        assert event_hash(stored.prev_hash, fields_of(stored)) == stored.hash == event.hash

    def test_a_clean_chain_verifies_and_prints_the_count(self, tenant):
        other = TenantFactory(slug="second")
        record(tenant, 4)
        record(other, 2)
        record(None, 3)
        out, err = verify_command()
        assert err == ""
        assert f"{chain_key(tenant)}: 4 events verified" in out
        assert f"{chain_key(other)}: 2 events verified" in out
        assert "global: 3 events verified" in out
        assert "OK: 9 events in 3 chain(s) verified" in out

        out, _ = verify_command(f"--tenant={tenant.slug}")
        assert "OK: 4 events in 1 chain(s) verified" in out
        assert "global" not in out

    def test_verify_unknown_tenant_is_a_clear_error(self):
        with pytest.raises(CommandError, match="No tenant with slug 'nope'"):
            verify_command("--tenant=nope")


# the database refuses edits -----------------------------------------------------


class TestAppendOnly:
    def test_plain_update_is_refused(self, tenant):
        event = record(tenant, 1)[0]
        with pytest.raises(DatabaseError, match="append-only: UPDATE"), transaction.atomic():
            AuditEvent.objects.unscoped().filter(pk=event.pk).update(action="forged")
        with (
            pytest.raises(DatabaseError, match="append-only: UPDATE"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(
                "UPDATE audit_auditevent SET actor_name = %s WHERE id = %s",
                ["mallory", event.pk],
            )
        assert AuditEvent.objects.unscoped().get(pk=event.pk).action == "test.event"

    def test_plain_delete_is_refused(self, tenant):
        event = record(tenant, 1)[0]
        with pytest.raises(DatabaseError, match="append-only: DELETE"), transaction.atomic():
            AuditEvent.objects.unscoped().filter(pk=event.pk).delete()
        with (
            pytest.raises(DatabaseError, match="append-only: DELETE"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
        assert AuditEvent.objects.unscoped().filter(pk=event.pk).exists()

    def test_model_save_of_an_existing_event_is_refused(self, tenant):
        event = record(tenant, 1)[0]
        event.action = "forged"
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            event.save()


# tampering is detected ------------------------------------------------------------


class TestTamperDetection:
    def test_an_edited_row(self, tenant):
        record(tenant, 4)
        tamper(
            (
                "UPDATE audit_auditevent SET metadata = %s WHERE chain = %s AND seq = 3",
                ('{"forged": true}', chain_key(tenant)),
            ),
        )
        err = assert_broken_at(tenant, 3, "event #3 was altered after it was written")
        assert "(2 events before it verified)" in err

    def test_an_edited_row_with_a_recomputed_hash_breaks_the_next_link(self, tenant):
        record(tenant, 4)
        row = chain_rows(chain_key(tenant))[1]
        row.actor_name = "someone else"
        forged = event_hash(row.prev_hash, fields_of(row))
        tamper(
            (
                "UPDATE audit_auditevent SET actor_name = %s, hash = %s WHERE id = %s",
                ("someone else", forged, row.pk),
            ),
        )
        assert_broken_at(tenant, 3, "event #3 does not link to event #2")

    def test_a_deleted_middle_row(self, tenant):
        record(tenant, 5)
        tamper(("DELETE FROM audit_auditevent WHERE chain = %s AND seq = 3", (chain_key(tenant),)))
        assert_broken_at(tenant, 3, "event #3 is missing (next row is #4)")

    def test_two_rows_reordered(self, tenant):
        record(tenant, 4)
        key = chain_key(tenant)
        # swap the seq of events 2 and 3 (through a free number: (chain, seq) is unique)
        tamper(
            ("UPDATE audit_auditevent SET seq = -1 WHERE chain = %s AND seq = 2", (key,)),
            ("UPDATE audit_auditevent SET seq = 2 WHERE chain = %s AND seq = 3", (key,)),
            ("UPDATE audit_auditevent SET seq = 3 WHERE chain = %s AND seq = -1", (key,)),
        )
        assert [r.action for r in chain_rows(key)] == ["test.event"] * 4  # rows all still there
        assert_broken_at(tenant, 2, "event #2 does not link to event #1")

    def test_rows_deleted_from_the_end(self, tenant):
        record(tenant, 5)
        tamper(("DELETE FROM audit_auditevent WHERE chain = %s AND seq >= 4", (chain_key(tenant),)))
        err = assert_broken_at(tenant, 4, "events were deleted from the end")
        assert "the chain head says #5 but rows end at #3" in err

    def test_every_row_deleted(self, tenant):
        record(tenant, 2)
        tamper(("DELETE FROM audit_auditevent WHERE chain = %s", (chain_key(tenant),)))
        assert_broken_at(tenant, 1, "the chain head says #2 but rows end at #0")

    def test_last_row_edited_and_rehashed_is_caught_by_the_head(self, tenant):
        record(tenant, 3)
        row = chain_rows(chain_key(tenant))[-1]
        row.action = "innocent.looking"
        forged = event_hash(row.prev_hash, fields_of(row))
        tamper(
            (
                "UPDATE audit_auditevent SET action = %s, hash = %s WHERE id = %s",
                ("innocent.looking", forged, row.pk),
            ),
        )
        assert_broken_at(tenant, 4, "events were deleted from the end")

    def test_a_row_moved_to_another_tenant(self, tenant):
        other = TenantFactory(slug="victim")
        record(tenant, 3)
        tamper(
            (
                "UPDATE audit_auditevent SET tenant_id = %s WHERE chain = %s AND seq = 2",
                (other.pk, chain_key(tenant)),
            ),
        )
        assert_broken_at(tenant, 2, "event #2 was altered after it was written")

    def test_only_the_broken_chain_is_reported(self, tenant):
        other = TenantFactory(slug="intact")
        record(tenant, 3)
        record(other, 3)
        record(None, 1)
        tamper(
            (
                "UPDATE audit_auditevent SET action = 'x' WHERE chain = %s AND seq = 1",
                (chain_key(tenant),),
            ),
        )
        out, err = io.StringIO(), io.StringIO()
        with pytest.raises(CommandError, match=r"broken in 1 of 3 chain\(s\)") as excinfo:
            call_command("audit_verify", stdout=out, stderr=err)
        assert excinfo.value.returncode == 1
        assert f"{chain_key(tenant)}: BROKEN at event #1" in err.getvalue()
        assert f"{chain_key(other)}: 3 events verified" in out.getvalue()
        assert "global: 1 events verified" in out.getvalue()
        # the intact tenant alone still verifies
        out, _ = verify_command(f"--tenant={other.slug}")
        assert "OK: 3 events in 1 chain(s) verified" in out

    def test_verify_chain_reports_the_break_without_the_command(self, tenant):
        record(tenant, 3)
        tamper(
            (
                "UPDATE audit_auditevent SET target_name = 'x' WHERE chain = %s AND seq = 2",
                (chain_key(tenant),),
            ),
        )
        report = verify_chain(AuditChain.objects.get(key=chain_key(tenant)))
        assert (report.ok, report.verified, report.broken_seq) == (False, 1, 2)
        assert [r.ok for r in verify_all(tenant.slug)] == [False]


# concurrency ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scope", ["tenant", "global"])
def test_concurrent_writers_produce_one_gapless_verified_chain(scope):
    """Writers in separate transactions queue on the chain head instead of forking it.

    The chain does not exist yet, so the writers also race to create its head.
    """
    tenant = TenantFactory(slug="busy") if scope == "tenant" else None
    threads_count, per_thread = 8, 5
    barrier = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(per_thread):
                with context.system_context(f"writer-{n}", tenant=tenant), transaction.atomic():
                    audit_record(action="load.write", metadata={"writer": n, "i": i})
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert errors == []

    key = chain_key(tenant)
    rows = chain_rows(key)
    total = threads_count * per_thread
    assert [r.seq for r in rows] == list(range(1, total + 1))
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert sorted((r.metadata["writer"], r.metadata["i"]) for r in rows) == [
        (n, i) for n in range(threads_count) for i in range(per_thread)
    ]
    assert AuditChain.objects.filter(key=key).count() == 1
    report = verify_chain(AuditChain.objects.get(key=key))
    assert report.ok and report.verified == total
    out, _ = verify_command()
    assert f"{key}: {total} events verified" in out
    assert "OK:" in out


# secrets -----------------------------------------------------------------------------------


class TestRedaction:
    def test_secret_keys_are_stored_redacted(self, tenant):
        with context.tenant_context(tenant):
            event = audit_record(
                action="provider.update",
                before={"api_key": "sk-live-before", "name": "openai", "password": "hunter2"},
                after={
                    "apiKey": "sk-live-after",
                    "token_hash": "abc123hash",
                    "config": {"Authorization": "Bearer s3cr3t", "base_url": "https://x"},
                    "headers": [{"authorization": "Basic Zm9v"}, {"accept": "json"}],
                },
                metadata={"client_secret": "cs", "private_key": "pk", "token": "tkn", "n": 1},
            )
        stored = AuditEvent.objects.unscoped().get(pk=event.pk)
        assert stored.before == {"api_key": REDACTED, "name": "openai", "password": REDACTED}
        assert stored.after == {
            "apiKey": REDACTED,
            "token_hash": REDACTED,
            "config": {"Authorization": REDACTED, "base_url": "https://x"},
            "headers": [{"authorization": REDACTED}, {"accept": "json"}],
        }
        assert stored.metadata == {
            "client_secret": REDACTED,
            "private_key": REDACTED,
            "token": REDACTED,
            "n": 1,
        }
        assert REDACTED == "[redacted]"
        flat = str((stored.before, stored.after, stored.metadata))
        for secret in ("sk-live", "hunter2", "abc123hash", "s3cr3t", "Zm9v", "tkn"):
            assert secret not in flat
        # redaction happens before hashing: the stored row still verifies
        assert event_hash(stored.prev_hash, fields_of(stored)) == stored.hash

    def test_the_callers_data_is_not_modified(self, tenant):
        after = {"password": "hunter2", "nested": {"api_key": "k"}}
        with context.tenant_context(tenant):
            audit_record(action="x.y", after=after)
        assert after == {"password": "hunter2", "nested": {"api_key": "k"}}

    def test_an_issued_tokens_plaintext_never_reaches_the_audit_log(self, tenant):
        from tests.factories import add_member, make_token

        user = UserFactory()
        add_member(tenant, user, Role.ADMIN)
        plaintext = make_token(tenant, user, scope="admin")
        event = AuditEvent.objects.for_tenant(tenant).get(action="api_token.create")
        everything = str([getattr(event, name) for name in fields_of(event)])
        assert plaintext not in everything
        assert plaintext.split("_")[-1] not in everything
        assert event.after["prefix"] in plaintext  # the prefix alone identifies it


# atomic with the caller --------------------------------------------------------------------


class TestAtomicWithCaller:
    def test_a_failing_audit_write_rolls_back_the_change(self, tenant):
        user = UserFactory()
        with (
            mock.patch(
                "controlplane.entities.audit_record",
                side_effect=RuntimeError("audit store unavailable"),
            ),
            pytest.raises(RuntimeError, match="audit store unavailable"),
        ):
            membership_add(tenant=tenant, user=user, role=Role.VIEWER)
        assert not Membership.objects.for_tenant(tenant).filter(user=user).exists()
        assert not AuditEvent.objects.for_tenant(tenant).exists()

    def test_a_database_refusal_of_the_audit_row_rolls_back_the_change(self, tenant):
        """No mock: a row squatting on the next seq makes the audit INSERT itself fail."""
        user = UserFactory()
        record(tenant, 1)
        head = AuditChain.objects.get(key=chain_key(tenant))
        squatter = chain_rows(chain_key(tenant))[0]
        squatter.pk = None
        squatter.seq = head.last_seq + 1
        squatter.save(force_insert=True)  # inserts are allowed; the head is not advanced
        with pytest.raises(IntegrityError):
            membership_add(tenant=tenant, user=user, role=Role.OPERATOR)
        assert not Membership.objects.for_tenant(tenant).filter(user=user).exists()
        head.refresh_from_db()
        assert head.last_seq == 1  # the head did not move either

    def test_a_successful_change_and_its_audit_row_land_together(self, tenant):
        user = UserFactory(username="joiner")
        with context.system_context("tests", tenant=tenant):
            membership = membership_add(tenant=tenant, user=user, role=Role.OPERATOR)
        event = AuditEvent.objects.for_tenant(tenant).get(action="membership.create")
        assert event.target_id == str(membership.pk)
        assert event.after == {"user": "joiner", "role": "operator"}
        assert event.actor_name == "system:tests"


class TestChainHead:
    def test_a_deleted_chain_head_is_reported(self, tenant):
        record(tenant, 3)
        AuditChain.objects.filter(key=chain_key(tenant)).delete()  # the head has no trigger
        assert_broken_at(tenant, 1, "the chain head is missing")
        with pytest.raises(CommandError, match=r"broken in 1 of 1 chain\(s\)"):
            verify_command()

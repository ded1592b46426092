"""Tenant-scoped managers fail closed: no tenant in context, no rows (an error, not everything)."""

from __future__ import annotations

import threading

import pytest

from controlplane.api.models import ApiToken
from controlplane.audit.models import AuditEvent
from controlplane.context import system_context, tenant_context
from controlplane.tenancy.managers import TenantScopeError
from controlplane.tenancy.models import Membership
from tests.factories import make_token

SCOPED_MODELS = [Membership, ApiToken, AuditEvent]
QUERIES = {
    "all": lambda m: list(m.objects.all()),
    "filter": lambda m: list(m.objects.filter(pk__gt=0)),
    "count": lambda m: m.objects.count(),
    "exists": lambda m: m.objects.exists(),
    "first": lambda m: m.objects.first(),
    "get": lambda m: m.objects.get(pk=1),
    "values_list": lambda m: list(m.objects.values_list("pk", flat=True)),
}


@pytest.fixture
def scoped_world(world):
    """The world plus a token (and so audit events) in each tenant."""
    make_token(world.acme, world.alice)
    make_token(world.globex, world.charlie)
    return world


def usernames(queryset) -> set[str]:
    return {row.user.username for row in queryset}


@pytest.mark.django_db
@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("query", QUERIES.values(), ids=QUERIES.keys())
def test_objects_without_a_tenant_raises(scoped_world, model, query):
    with pytest.raises(TenantScopeError) as excinfo:
        query(model)
    message = str(excinfo.value)
    assert message.startswith(f"{model.__name__} is tenant-scoped and no tenant is in context")
    assert "tenant_context(tenant)" in message and ".unscoped()" in message


@pytest.mark.django_db
def test_create_without_a_tenant_raises(world):
    with pytest.raises(TenantScopeError):
        Membership.objects.create(tenant=world.acme, user=world.charlie)
    assert not Membership.objects.unscoped().filter(user=world.charlie, tenant=world.acme).exists()


@pytest.mark.django_db
def test_a_system_context_without_a_tenant_still_raises(world):
    with system_context("tests"), pytest.raises(TenantScopeError):
        Membership.objects.count()


@pytest.mark.django_db
def test_tenant_context_shows_only_that_tenants_rows(scoped_world):
    w = scoped_world
    with tenant_context(w.acme):
        assert usernames(Membership.objects.all()) == {"alice", "adam", "oscar", "bob"}
        assert usernames(ApiToken.objects.all()) == {"alice"}
        events = list(AuditEvent.objects.all())
        assert events and {e.tenant_id for e in events} == {w.acme.pk}
        # another tenant's row is not found, even by primary key
        charlie = Membership.objects.unscoped().get(tenant=w.globex, user=w.charlie)
        with pytest.raises(Membership.DoesNotExist):
            Membership.objects.get(pk=charlie.pk)
    with tenant_context(w.globex):
        assert usernames(Membership.objects.all()) == {"charlie"}
        assert usernames(ApiToken.objects.all()) == {"charlie"}
        assert {e.tenant_id for e in AuditEvent.objects.all()} == {w.globex.pk}
        assert AuditEvent.objects.count() == AuditEvent.objects.for_tenant(w.globex).count()


@pytest.mark.django_db
def test_context_nests_and_is_restored_on_exit(scoped_world):
    w = scoped_world
    with tenant_context(w.acme):
        with tenant_context(w.globex):
            assert usernames(Membership.objects.all()) == {"charlie"}
        assert usernames(Membership.objects.all()) == {"alice", "adam", "oscar", "bob"}
    with pytest.raises(TenantScopeError):
        Membership.objects.count()


@pytest.mark.django_db
def test_context_is_restored_when_the_block_raises(world):
    with pytest.raises(ZeroDivisionError), tenant_context(world.acme):
        1 / 0  # noqa: B018
    with pytest.raises(TenantScopeError):
        Membership.objects.count()


@pytest.mark.django_db
def test_a_new_thread_does_not_inherit_the_tenant(world):
    errors: list[BaseException] = []

    def query():
        try:
            Membership.objects.count()
        except BaseException as exc:
            errors.append(exc)

    with tenant_context(world.acme):
        thread = threading.Thread(target=query)
        thread.start()
        thread.join(timeout=10)
    assert len(errors) == 1 and isinstance(errors[0], TenantScopeError)


@pytest.mark.django_db
def test_for_tenant_scopes_explicitly_without_a_context(scoped_world):
    w = scoped_world
    assert usernames(Membership.objects.for_tenant(w.acme)) == {"alice", "adam", "oscar", "bob"}
    assert usernames(Membership.objects.for_tenant(w.globex)) == {"charlie"}
    assert usernames(ApiToken.objects.for_tenant(w.globex)) == {"charlie"}
    assert {e.tenant_id for e in AuditEvent.objects.for_tenant(w.acme)} == {w.acme.pk}


@pytest.mark.django_db
def test_queryset_for_tenant_narrows_and_never_widens_the_context(scoped_world):
    w = scoped_world
    with tenant_context(w.acme):
        assert Membership.objects.filter(role="owner").for_tenant(w.globex).count() == 0
        assert usernames(Membership.objects.all().for_tenant(w.acme)) == {
            "alice",
            "adam",
            "oscar",
            "bob",
        }


@pytest.mark.django_db
def test_unscoped_returns_every_tenants_rows(scoped_world):
    w = scoped_world
    assert usernames(Membership.objects.unscoped()) == {"alice", "adam", "oscar", "bob", "charlie"}
    assert usernames(ApiToken.objects.unscoped()) == {"alice", "charlie"}
    assert {e.tenant_id for e in AuditEvent.objects.unscoped().filter(tenant__isnull=False)} == {
        w.acme.pk,
        w.globex.pk,
    }
    with tenant_context(w.acme):  # deliberate: unscoped ignores the context too
        assert ApiToken.objects.unscoped().count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("model", SCOPED_MODELS, ids=lambda m: m.__name__)
def test_none_needs_no_tenant(scoped_world, model, django_assert_num_queries):
    with django_assert_num_queries(0):
        empty = model.objects.none()
        assert list(empty) == []
        assert empty.count() == 0
    assert empty.model is model

"""factory-boy factories for the foundation's models. Writes that have a service go through it."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from controlplane import context
from controlplane.api.services import api_token_create
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership, Tenant

TEST_PASSWORD = "correct-horse-battery-staple-42"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda t: t.slug.title())


def add_member(tenant: Tenant, user, role: str = Role.VIEWER) -> Membership:
    """Membership row without going through the audited service (fixture setup only)."""
    return Membership.objects.for_tenant(tenant).create(tenant=tenant, user=user, role=role)


def make_token(tenant: Tenant, user, scope: str | None = None, **kwargs) -> str:
    """A real API token's plaintext, issued through the service.

    ``scope`` defaults to the widest the user's role can use (admin for owners and admins,
    write for operators and viewers): the service refuses anything wider.
    """
    from controlplane.rbac.roles import max_token_scope

    with context.system_context("tests", tenant=tenant):
        if scope is None:
            role = Membership.objects.for_tenant(tenant).filter(user=user).first()
            scope = max_token_scope(role.role) if role is not None else "read"
        return api_token_create(
            tenant=tenant, user=user, name="test", scope=scope, **kwargs
        ).plaintext

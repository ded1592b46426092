"""Seed the demo tenants and users. Idempotent: running it again changes nothing already there."""

from __future__ import annotations

import json
import secrets
from importlib import import_module

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from controlplane import context
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership, Tenant
from controlplane.tenancy.services import membership_add, tenant_create, user_create

DEMO_TENANTS = [
    (
        "acme",
        "Acme Corp",
        [("alice", Role.OWNER), ("oliver", Role.OPERATOR), ("vera", Role.VIEWER)],
    ),
    ("globex", "Globex", [("charlie", Role.OWNER)]),
]


class Command(BaseCommand):
    help = (
        "Create the demo tenants acme (alice owner, oliver operator, vera viewer) and globex "
        "(charlie owner), then each app's demo data. Passwords: DEMO_PASSWORD, or generated "
        "once and kept in the data directory. Safe to run again."
    )

    def handle(self, *args, **options):
        password_file = settings.DATA_DIR / "demo-passwords.json"
        fixed = settings.DEMO_PASSWORD
        remembered = json.loads(password_file.read_text()) if password_file.exists() else {}
        logins: list[tuple[str, str, str, str]] = []
        User = get_user_model()
        with context.system_context("seed_demo"), transaction.atomic():
            for slug, name, members in DEMO_TENANTS:
                tenant = Tenant.objects.filter(slug=slug).first() or tenant_create(
                    slug=slug, name=name
                )
                with context.tenant_context(tenant):
                    for username, role in members:
                        user = User.objects.filter(username=username).first()
                        if user is None:
                            password = fixed or remembered.get(username) or _password()
                            user = user_create(
                                username=username,
                                password=password,
                                email=f"{username}@{slug}.example",
                            )
                            remembered[username] = password
                        elif fixed and not user.check_password(fixed):
                            user.set_password(fixed)
                            user.save(update_fields=["password"])
                        if not Membership.objects.filter(user=user).exists():
                            membership_add(tenant=tenant, user=user, role=role)
                        shown = fixed or remembered.get(username)
                        if shown and not user.check_password(shown):
                            shown = None
                        logins.append(
                            (
                                slug,
                                username,
                                role,
                                shown or "(unchanged; set DEMO_PASSWORD to reset)",
                            )
                        )
            for app in apps.get_app_configs():
                try:
                    demo = import_module(f"{app.name}.demo")
                except ModuleNotFoundError:
                    continue
                demo.seed(stdout=self.stdout)
        if not fixed:
            settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
            password_file.write_text(json.dumps(remembered, indent=2))
            password_file.chmod(0o600)
        self.stdout.write("Demo logins:")
        for slug, username, role, password in logins:
            self.stdout.write(f"  {slug:<8} {username:<8} {role:<9} password: {password}")


def _password() -> str:
    return secrets.token_urlsafe(12)

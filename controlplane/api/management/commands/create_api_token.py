from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from controlplane import context
from controlplane.api.choices import TokenScope
from controlplane.api.services import api_token_create
from controlplane.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Create an API token for a member of a tenant and print it (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--user", required=True, help="username of a member of the tenant")
        parser.add_argument("--scope", required=True, choices=TokenScope.values)
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            help="days until it expires (default 90, at most 3650)",
        )
        parser.add_argument("--name", default="created with manage.py create_api_token")

    def handle(self, *args, tenant, user, scope, expires_days, name, **options):
        tenant_obj = Tenant.objects.filter(slug=tenant).first()
        if tenant_obj is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        user_obj = get_user_model().objects.filter(username=user).first()
        if user_obj is None:
            raise CommandError(f"No user named {user!r}.")
        with context.system_context("create_api_token", tenant=tenant_obj):
            try:
                issued = api_token_create(
                    tenant=tenant_obj,
                    user=user_obj,
                    name=name,
                    scope=scope,
                    expires_in_days=expires_days,
                )
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(issued.plaintext)

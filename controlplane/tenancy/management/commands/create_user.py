import getpass

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from controlplane import context
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Tenant
from controlplane.tenancy.services import membership_add, user_create


class Command(BaseCommand):
    help = "Create a user account, optionally adding it to a tenant with a role."

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password", help="prompted for when omitted and a terminal is attached"
        )
        parser.add_argument("--tenant", help="tenant slug to join")
        parser.add_argument("--role", choices=Role.values, default=Role.VIEWER)

    def handle(self, *args, username, email, password, tenant, role, **options):
        tenant_obj = None
        if tenant:
            tenant_obj = Tenant.objects.filter(slug=tenant).first()
            if tenant_obj is None:
                raise CommandError(f"No tenant with slug {tenant!r}.")
        if password is None and self.stdin_is_tty():
            password = getpass.getpass(f"Password for {username}: ")
        with context.system_context("create_user"):
            try:
                user = user_create(username=username, email=email, password=password)
                if tenant_obj is not None:
                    with context.tenant_context(tenant_obj):
                        membership_add(tenant=tenant_obj, user=user, role=role)
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from None
        where = f" in {tenant} as {role}" if tenant_obj else ""
        self.stdout.write(self.style.SUCCESS(f"Created user {username}{where}."))

    @staticmethod
    def stdin_is_tty() -> bool:
        import sys

        return sys.stdin.isatty()

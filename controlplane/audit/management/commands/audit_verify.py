from django.core.management.base import BaseCommand, CommandError

from controlplane.audit.verify import verify_all
from controlplane.tenancy.models import Tenant


class Command(BaseCommand):
    help = (
        "Verify the audit hash chains (every tenant's and the global one, or one tenant's). "
        "Exit 0 with the count verified, or exit 1 naming the first broken link."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="slug of the tenant whose chain to verify")

    def handle(self, *args, tenant=None, **options):
        if tenant is not None and not Tenant.objects.filter(slug=tenant).exists():
            raise CommandError(f"No tenant with slug {tenant!r}.")
        reports = verify_all(tenant)
        broken = [r for r in reports if not r.ok]
        for report in reports:
            if report.ok:
                self.stdout.write(f"{report.chain}: {report.verified} events verified")
            else:
                self.stderr.write(
                    f"{report.chain}: BROKEN at event #{report.broken_seq}: {report.reason} "
                    f"({report.verified} events before it verified)"
                )
        total = sum(r.verified for r in reports)
        if broken:
            raise CommandError(
                f"audit chain broken in {len(broken)} of {len(reports)} chain(s)", returncode=1
            )
        self.stdout.write(
            self.style.SUCCESS(f"OK: {total} events in {len(reports)} chain(s) verified")
        )

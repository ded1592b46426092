"""Re-encrypt every stored secret under the first key of SECRETS_ENCRYPTION_KEYS."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from controlplane import context
from controlplane.audit.services import audit_record
from controlplane.crypto import SecretDecryptionError, encrypted_fields


class Command(BaseCommand):
    help = (
        "Re-encrypt provider keys, tool and MCP secrets and named secrets under the newest key. "
        "Put the new key first in SECRETS_ENCRYPTION_KEYS and keep the old ones after it, run "
        "this, then remove the old keys. All or nothing: one undecryptable value aborts it."
    )

    def handle(self, *args, **options):
        counts: dict[str, int] = {}
        try:
            with transaction.atomic(), context.system_context("rotate_secrets"):
                for model, fields in encrypted_fields():
                    manager = model._default_manager
                    queryset = manager.unscoped() if hasattr(manager, "unscoped") else manager.all()
                    label = model._meta.label
                    # A plain query, not a server-side cursor: an undecryptable row must
                    # abort cleanly, and secret tables are small.
                    for row in queryset.only("pk", *fields):
                        values = {name: getattr(row, name) for name in fields}
                        # update() runs get_prep_value, which encrypts with the first key
                        queryset.model._base_manager.filter(pk=row.pk).update(**values)
                        counts[label] = counts.get(label, 0) + 1
                audit_record(action="secrets.rotate", tenant=None, metadata={"rows": counts})
        except SecretDecryptionError as exc:
            raise CommandError(f"Nothing was changed. {exc}") from None
        total = sum(counts.values())
        for label, count in sorted(counts.items()):
            self.stdout.write(f"{label}: {count} row(s) re-encrypted")
        self.stdout.write(
            self.style.SUCCESS(f"OK: {total} row(s) re-encrypted under the newest key")
        )

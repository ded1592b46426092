"""Re-encrypt every stored secret under the first key of SECRETS_ENCRYPTION_KEYS."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from controlplane import context
from controlplane.audit.services import audit_record
from controlplane.crypto import (
    SecretDecryptionError,
    current_keys,
    encrypted_fields,
    write_key_file,
)


class Command(BaseCommand):
    help = (
        "Re-encrypt provider keys, tool and MCP secrets and named secrets under the newest key. "
        "Put the new key first in SECRETS_ENCRYPTION_KEYS and keep the old ones after it, run "
        "this, then remove the old keys. All or nothing: one undecryptable value aborts it. "
        "In embedded mode the key list is also written to the server's key file "
        "(var/secrets_key), which the running server reads."
    )

    def handle(self, *args, **options):
        counts: dict[str, int] = {}
        keys = list(current_keys())
        key_file = Path(settings.DATA_DIR) / "secrets_key" if settings.EMBEDDED else None
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
                audit_record(
                    action="secrets.rotate",
                    tenant=None,
                    metadata={"rows": counts, **({"key_file": str(key_file)} if key_file else {})},
                )
                if key_file is not None:
                    # Written before the commit: if writing fails nothing is re-encrypted; if
                    # the commit fails, the file still lists the old keys after the new one.
                    write_key_file(key_file, keys)
        except SecretDecryptionError as exc:
            raise CommandError(f"Nothing was changed. {exc}") from None
        except OSError as exc:
            raise CommandError(
                f"Nothing was changed: the key file {key_file} could not be written ({exc})."
            ) from None
        total = sum(counts.values())
        for label, count in sorted(counts.items()):
            self.stdout.write(f"{label}: {count} row(s) re-encrypted")
        self.stdout.write(
            self.style.SUCCESS(f"OK: {total} row(s) re-encrypted under the newest key")
        )
        if key_file is not None:
            self.stdout.write(
                f"{key_file} now lists the {len(keys)} key(s), newest first; the running "
                "server reads it. Remove old keys from it (and from SECRETS_ENCRYPTION_KEYS) "
                "once you no longer need to decrypt backups made before this rotation."
            )
        else:
            self.stdout.write(
                "Give every web and worker process the same SECRETS_ENCRYPTION_KEYS (new key "
                "first) and restart them; until then they answer 503 for what they cannot "
                "decrypt."
            )

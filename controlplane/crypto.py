"""Secrets at rest: Fernet encryption under keys from the environment, with rotation.

``SECRETS_ENCRYPTION_KEYS`` lists Fernet keys newest first: the first encrypts,
every key decrypts (MultiFernet). To rotate: put a new key first, keep the old
ones after it, run ``manage.py rotate_secrets``, then drop the old keys.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class SecretDecryptionError(RuntimeError):
    """A stored secret cannot be decrypted with any configured key."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.SECRETS_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError(
            "A stored secret cannot be decrypted: SECRETS_ENCRYPTION_KEYS no longer holds the "
            "key it was encrypted with. Add that key back (after the new one) and run "
            "manage.py rotate_secrets."
        ) from None


class EncryptedTextField(models.TextField):
    """A text column stored encrypted; Python sees plaintext, the database only ciphertext.

    Empty strings are stored as empty (nothing to protect). Never expose a model
    field of this type in a serializer except as write-only.
    """

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt(value)


class EncryptedJSONField(models.TextField):
    """A JSON object stored encrypted (e.g. header name -> secret value)."""

    def from_db_value(self, value, expression, connection):
        import json

        if value in (None, ""):
            return {}
        return json.loads(decrypt(value))

    def to_python(self, value):
        import json

        if isinstance(value, dict):
            return value
        if value in (None, ""):
            return {}
        return json.loads(value)

    def get_prep_value(self, value):
        import json

        if not value:
            return ""
        return encrypt(json.dumps(value, sort_keys=True))


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """Every (model, [field names]) holding encrypted values, for rotation."""
    from django.apps import apps

    found = []
    for model in apps.get_models():
        names = [
            f.name
            for f in model._meta.concrete_fields
            if isinstance(f, EncryptedTextField | EncryptedJSONField)
        ]
        if names:
            found.append((model, names))
    return found

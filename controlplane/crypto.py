"""Secrets at rest: Fernet encryption under keys from the environment, with rotation.

``SECRETS_ENCRYPTION_KEYS`` lists Fernet keys newest first: the first encrypts,
every key decrypts (MultiFernet). To rotate: put a new key first, keep the old
ones after it, run ``manage.py rotate_secrets``, then drop the old keys.

Embedded mode without ``SECRETS_ENCRYPTION_KEYS`` keeps the keys in
``settings.SECRETS_KEY_FILE`` (``var/secrets_key``). ``rotate_secrets`` run in embedded
mode writes the key list it used to that file (atomically), and a server reading the file
reads it again when it changes, so rotating does not break the running server.

A value no configured key decrypts raises ``SecretDecryptionError``: the API and the
dashboard answer 503 with what to do (``controlplane.middleware``), a run's step fails
with code ``secrets_unusable``; never a bare 500.
"""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

KEY_FILE_HELP = (
    "In embedded mode, run manage.py rotate_secrets with SECRETS_ENCRYPTION_KEYS set to the new "
    "key followed by the old ones: it re-encrypts the secrets and writes the keys to the "
    "server's key file ({path}), which the running server reads."
)


class SecretDecryptionError(RuntimeError):
    """A stored secret cannot be decrypted with any key this process has."""

    code = "secrets_key_unusable"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or unusable_message())


def unusable_message() -> str:
    """What went wrong and what to do, for the API, the dashboard and a run's step."""
    message = (
        "A stored secret cannot be decrypted with the encryption keys this server has: it "
        "was encrypted under a key that is not in its SECRETS_ENCRYPTION_KEYS (were the keys "
        "rotated?). Give the server the new key list, newest first with the old keys after "
        "it, and restart it; nothing was changed."
    )
    path = getattr(settings, "SECRETS_KEY_FILE", None)
    if getattr(settings, "EMBEDDED", False):
        message += " " + KEY_FILE_HELP.format(path=path or Path(settings.DATA_DIR, "secrets_key"))
    return message


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


@cache
def _file_keys(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    text = Path(path).read_text()
    return tuple(k.strip() for k in text.replace("\n", ",").split(",") if k.strip())


def current_keys() -> tuple[str, ...]:
    """The keys in use, newest first: the key file's when the server reads one (its
    current content, so a rotation is picked up), else ``SECRETS_ENCRYPTION_KEYS``."""
    path = getattr(settings, "SECRETS_KEY_FILE", None)
    if path:
        try:
            stat = os.stat(path)
        except OSError:
            pass
        else:
            keys = _file_keys(str(path), stat.st_mtime_ns, stat.st_size)
            if keys:
                return keys
    return tuple(settings.SECRETS_ENCRYPTION_KEYS)


def fernet() -> MultiFernet:
    keys = current_keys()
    try:
        return _fernet(keys)
    except (ValueError, TypeError):  # the key file was edited by hand into something else
        raise SecretDecryptionError(
            f"The key file {settings.SECRETS_KEY_FILE} holds something that is not a list of "
            "Fernet keys (comma-separated, newest first); restore it."
        ) from None


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError() from None


def write_key_file(path: Path | str, keys: list[str] | tuple[str, ...]) -> None:
    """Replace the key file with ``keys`` (newest first) atomically: a reader sees the old
    list or the new one, never half of it. Readable by the owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".secrets_key.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(",".join(keys) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

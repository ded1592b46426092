from django.db import models


class TokenScope(models.TextChoices):
    """What an API token may do, capped further by its user's role."""

    READ = "read", "Read"
    WRITE = "write", "Write"
    ADMIN = "admin", "Admin"

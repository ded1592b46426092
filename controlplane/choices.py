"""Choices shared by every app: the active/disabled status of registry objects.

Imports Django only.
"""

from django.db import models


class Status(models.TextChoices):
    """Whether an object (agent, tool, provider, workflow, ...) may be used."""

    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled"

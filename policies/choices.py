from django.db import models


class Effect(models.TextChoices):
    ALLOW = "allow", "Allow"
    DENY = "deny", "Deny"
    REQUIRE_APPROVAL = "require_approval", "Require approval"


class PolicyMode(models.TextChoices):
    ENFORCE = "enforce", "Enforce"
    LOG_ONLY = "log_only", "Log only"

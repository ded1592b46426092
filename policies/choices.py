from django.db import models


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class ApprovalKind(models.TextChoices):
    APPROVAL = "approval", "Approval step"
    INPUT = "input", "A person answers (human agent)"
    POLICY = "policy", "Required by a policy"
    ESCALATION = "escalation", "Escalated step failure"


class Effect(models.TextChoices):
    ALLOW = "allow", "Allow"
    DENY = "deny", "Deny"
    REQUIRE_APPROVAL = "require_approval", "Require approval"


class PolicyMode(models.TextChoices):
    ENFORCE = "enforce", "Enforce"
    LOG_ONLY = "log_only", "Log only"

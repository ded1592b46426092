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

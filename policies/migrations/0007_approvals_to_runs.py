"""ApprovalRequest and ApprovalVote now belong to runs (see runs' 0006): they leave policies'
state only; their tables and rows stay where they are."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("policies", "0006_decision_would_policy"),
        ("runs", "0006_approvals_from_policies"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name="ApprovalVote"),
                migrations.DeleteModel(name="ApprovalRequest"),
            ],
        ),
    ]

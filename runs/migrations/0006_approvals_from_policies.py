"""ApprovalRequest and ApprovalVote move from policies to runs (runs/approvals/).

Only Django's state moves: the tables keep their names (``db_table``) and their rows. The
content types are renamed to the runs app, so object permissions granted on requests and
anything pointing at a request by content type keep working. policies' 0007 deletes the
models from its own state after this one.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = ("approvalrequest", "approvalvote")


def _relabel(apps, schema_editor, old, new):
    ContentType = apps.get_model("contenttypes", "ContentType")
    types = ContentType.objects.using(schema_editor.connection.alias)
    for model in MOVED:
        if types.filter(app_label=old, model=model).exists():
            # a row for the new label can only be an empty one made by a later post_migrate
            types.filter(app_label=new, model=model).delete()
            types.filter(app_label=old, model=model).update(app_label=new)


def forwards(apps, schema_editor):
    _relabel(apps, schema_editor, "policies", "runs")


def backwards(apps, schema_editor):
    _relabel(apps, schema_editor, "runs", "policies")


class Migration(migrations.Migration):

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("policies", "0006_decision_would_policy"),
        ("runs", "0005_run_agent_versions"),
        ("tenancy", "0003_invitation"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='ApprovalRequest',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('approval', 'Approval step'), ('input', 'A person answers (human agent)'), ('policy', 'Required by a policy'), ('escalation', 'Escalated step failure')], default='approval', max_length=16)),
                        ('title', models.CharField(max_length=300)),
                        ('details', models.JSONField(blank=True, default=dict)),
                        ('response_schema', models.JSONField(blank=True, null=True)),
                        ('required_role', models.CharField(default='admin', max_length=16)),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('approved', 'Approved'), ('denied', 'Denied'), ('expired', 'Expired'), ('cancelled', 'Cancelled')], db_index=True, default='pending', max_length=16)),
                        ('response', models.JSONField(blank=True, null=True)),
                        ('comment', models.TextField(blank=True)),
                        ('decided_at', models.DateTimeField(blank=True, null=True)),
                        ('expires_at', models.DateTimeField(blank=True, null=True)),
                        ('on_timeout', models.CharField(default='deny', max_length=16)),
                        ('rule', models.CharField(blank=True, max_length=100)),
                        ('inputs_hash', models.CharField(blank=True, max_length=64)),
                        ('required_approvals', models.PositiveSmallIntegerField(default=1)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('decided_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('policy', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='policies.policy')),
                        ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='runs.run')),
                        ('step_run', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='runs.steprun')),
                        ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenancy.tenant')),
                    ],
                    options={
                        'db_table': 'policies_approvalrequest',
                        'ordering': ['-id'],
                        'permissions': [('decide_approvalrequest', 'Decide approval requests')],
                    },
                ),
                migrations.CreateModel(
                    name='ApprovalVote',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('approve', models.BooleanField()),
                        ('comment', models.TextField(blank=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('approval', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='votes', to='runs.approvalrequest')),
                        ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='tenancy.tenant')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'policies_approvalvote',
                        'ordering': ['id'],
                    },
                ),
                migrations.AddIndex(
                    model_name='approvalrequest',
                    index=models.Index(fields=['tenant', 'status', '-id'], name='approval_inbox'),
                ),
                migrations.AddConstraint(
                    model_name='approvalvote',
                    constraint=models.UniqueConstraint(fields=('approval', 'user'), name='approvalvote_one_per_user'),
                ),
            ],
        ),
        migrations.RunPython(forwards, backwards),
    ]

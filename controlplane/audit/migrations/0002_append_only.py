from django.db import migrations

STATEMENTS = {
    "postgresql": (
        [
            """CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_auditevent is append-only: % is not allowed', TG_OP;
            END;
            $$ LANGUAGE plpgsql""",
            "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent",
            """CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_auditevent
            FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()""",
        ],
        [
            "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent",
            "DROP FUNCTION IF EXISTS audit_event_append_only()",
        ],
    ),
    "sqlite": (
        [
            """CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON audit_auditevent
            BEGIN SELECT RAISE(ABORT, 'audit_auditevent is append-only: UPDATE is not allowed'); END""",
            """CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON audit_auditevent
            BEGIN SELECT RAISE(ABORT, 'audit_auditevent is append-only: DELETE is not allowed'); END""",
        ],
        [
            "DROP TRIGGER IF EXISTS audit_event_no_update",
            "DROP TRIGGER IF EXISTS audit_event_no_delete",
        ],
    ),
}


def _run(schema_editor, index):
    statements = STATEMENTS.get(schema_editor.connection.vendor)
    if statements:
        for sql in statements[index]:
            schema_editor.execute(sql, params=None)


def forbid(apps, schema_editor):
    _run(schema_editor, 0)


def allow(apps, schema_editor):
    _run(schema_editor, 1)


class Migration(migrations.Migration):
    """Make the audit table append-only in the database itself (UPDATE and DELETE refused)."""

    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(forbid, allow)]

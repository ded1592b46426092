"""``manage.py audit_verify``: check every tenant's hash chain."""

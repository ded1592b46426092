"""``manage.py rotate_secrets``: re-encrypt stored secrets with the newest key."""

"""Sign-in events into the global audit chain (Django's and django-axes' auth signals)."""

from __future__ import annotations

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from controlplane import context
from controlplane.audit.services import audit_record


@receiver(user_logged_in)
def on_login(sender, request, user, **kwargs):
    with context.using(user=user, tenant=None):
        audit_record(
            action="auth.login",
            target=user,
            tenant=None,
            metadata={"user_agent": request.headers.get("User-Agent", "")[:200]}
            if request is not None
            else {},
        )


@receiver(user_logged_out)
def on_logout(sender, request, user, **kwargs):
    if user is None:
        return
    with context.using(user=user, tenant=None):
        audit_record(action="auth.logout", target=user, tenant=None)


@receiver(user_login_failed)
def on_login_failed(sender, credentials, request=None, **kwargs):
    username = str(credentials.get("username", ""))[:150]
    with context.using(user=None, tenant=None):
        audit_record(
            action="auth.login_failed",
            tenant=None,
            target_type="auth.user",
            target_name=username,
            metadata={"username": username},
            actor_name=f"anonymous (as {username})" if username else "anonymous",
        )


@receiver(user_locked_out)
def on_locked_out(sender, request, username, ip_address, **kwargs):
    with context.using(user=None, tenant=None):
        audit_record(
            action="auth.locked_out",
            tenant=None,
            target_type="auth.user",
            target_name=str(username or "")[:150],
            metadata={"username": username, "ip": ip_address},
            actor_name="system:login-throttle",
        )

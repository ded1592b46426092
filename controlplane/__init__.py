"""The agent orchestration control plane: project wiring and shared infrastructure."""

from controlplane.celery import app as celery_app

__all__ = ("celery_app",)

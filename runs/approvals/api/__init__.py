"""The approvals API: serializers and the viewset (routed in controlplane/urls.py)."""

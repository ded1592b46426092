"""The approvals API: serializers and the viewset (routed in controlplane/api/urls.py)."""

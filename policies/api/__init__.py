"""The policies API: policies and their versions, stored decisions (routed in
controlplane/api/urls.py)."""

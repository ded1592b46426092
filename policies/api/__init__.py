"""The policies API: policies and their versions, stored decisions (routed in
controlplane/urls.py)."""

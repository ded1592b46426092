"""Shared REST API infrastructure: the base viewset (tenant scoping and permissions enforced),
authentication by API token, pagination, errors, schema, and the tokens' own API. The route
table is in ``controlplane/urls.py``. Imports ``controlplane`` only."""

"""The REST API of tenants, members and invitations. Imports ``controlplane`` only."""

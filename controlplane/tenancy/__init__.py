"""Tenants and memberships (role per member), invitations, and the tenant-scoped manager that
refuses a query without a tenant. Imports ``controlplane`` only."""

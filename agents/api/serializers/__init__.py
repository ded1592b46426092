"""Registry serializers, one module per entity. They validate and shape data; services write.
Secrets are write-only. Imports ``agents`` and ``controlplane`` only."""

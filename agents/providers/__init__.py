"""Model provider adapters: one module per provider kind, one interface (``base.Adapter``)."""

"""Live updates: websocket consumers per tenant, typed event payloads and groups, published
after commit. Imports ``controlplane`` only."""

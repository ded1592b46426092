"""Models of the agents app: filled by the registry issue; the app and migrations exist now."""

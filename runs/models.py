"""Models of the runs app: filled by the run engine issue; the app and migrations exist now."""

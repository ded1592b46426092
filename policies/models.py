"""Models of the policies app: filled by the policies issue; the app and migrations exist now."""

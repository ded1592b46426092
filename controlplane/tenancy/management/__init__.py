"""Management commands of the installation: users, the demo data, the server."""

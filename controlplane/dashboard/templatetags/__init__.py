"""Template tags shared by every dashboard page."""

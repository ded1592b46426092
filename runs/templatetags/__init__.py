"""Template tags of the runs pages (statuses, JSON, timelines) and the approvals count."""

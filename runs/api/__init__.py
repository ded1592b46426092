"""The runs REST API: workflows, runs (start, events, cancel, resume, rerun), agent memory."""

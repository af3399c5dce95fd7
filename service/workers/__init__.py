"""Background loops run by every replica: submitter and reconciler."""

"""Standard Webhooks: verifying Replicate's, signing Tuneyard's own."""

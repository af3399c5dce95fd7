"""The client for Replicate's HTTP API."""

"""What the chaos scenarios share: the private cluster, processes, senders,
results."""

"""Plain rules with no I/O: names, ids, the order of a training's statuses."""

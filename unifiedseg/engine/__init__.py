"""Training machinery: the trainer loop and its hooks, checkpoints, distributed set-up, and the entry point
that builds a run from a config (`launch`)."""

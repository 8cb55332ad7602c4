"""Training machinery: the trainer loop and its hooks, checkpoints, precision, distributed set-up."""

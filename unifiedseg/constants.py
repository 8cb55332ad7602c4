"""Project-wide constants, defined once."""

# Label value for pixels that no loss or metric counts: unlabeled pixels, classes mapped nowhere,
# classes whose universal class is ambiguous, and the padding of crops. Label maps are uint8, so a
# taxonomy holds at most 255 classes (ids 0..254).
IGNORE_INDEX = 255
MAX_CLASSES = IGNORE_INDEX

"""Helpers for error messages: close-match suggestions for a misspelt name, the first line of an error."""

import difflib


def suggest(name: str, candidates: list[str]) -> str:
    """`; did you mean 'x'?` for the closest candidate, or an empty string."""
    lowered = {c.lower(): c for c in candidates}
    if name.lower() in lowered:  # a difference of case only: that is the one meant
        return f"; did you mean {lowered[name.lower()]!r}?"
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def first_line(err: BaseException | str) -> str:
    """The first non-empty line of an error's message (its type's name when it has none, as EOFError())."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

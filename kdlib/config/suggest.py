"""'Did you mean ...?': the closest known name to a misspelt one, for error messages."""
from __future__ import annotations

import difflib


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""

"""Free text that people type (reasons, comments) and that SessionGate shows to other people.

Such text reaches e-mail and chat (AWS Chatbot custom notifications render ``description`` as
Markdown: AWS doc "Custom notifications using Amazon Q Developer in chat applications",
``textType: client-markdown``). So it must be one visible line: no control characters (Cc), no format
characters (Cf: bidi overrides such as U+202E, zero-width spaces and joiners, soft hyphens), no line or
paragraph separators (Zl, Zp), no surrogates, private-use or unassigned code points (Cs, Co, Cn), and
a minimum length counts only what a reader sees. Markdown is escaped where it renders (chat), not in
the stored text or in e-mail (plain text).
"""

from __future__ import annotations

import re
import unicodedata

# Unicode general categories refused in free text (see the module docstring).
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Categories that add nothing a reader can see on their own: separators (spaces) and combining marks.
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Mn", "Me"})
# ASCII punctuation with a meaning in CommonMark/Slack markup; CommonMark lets a backslash escape any
# ASCII punctuation character.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&])")
REPLACEMENT = "\N{REPLACEMENT CHARACTER}"


def forbidden_characters(value: str) -> list[str]:
    """The refused characters of ``value`` as ``U+XXXX`` (first five), for an error message."""
    found = [f"U+{ord(c):04X}" for c in value if unicodedata.category(c) in FORBIDDEN_CATEGORIES]
    return list(dict.fromkeys(found))[:5]


def visible_length(value: str) -> int:
    """Characters a reader sees: spaces and combining marks do not count."""
    return sum(unicodedata.category(c) not in _INVISIBLE_CATEGORIES for c in value)


def one_line(value: object) -> str:
    """``value`` as display text with every refused character replaced (for text from older records or
    other sources that were not checked at input)."""
    return "".join(REPLACEMENT if unicodedata.category(c) in FORBIDDEN_CATEGORIES else c for c in str(value))


def escape_markdown(value: object) -> str:
    """``value`` as one line whose Markdown characters render literally."""
    return _MARKDOWN.sub(r"\\\1", one_line(value))

"""Code blocks of the project's Markdown documents, for the tests that run what the
documents show (the README's docker commands, the package README's settings)."""

from __future__ import annotations

import re
import textwrap


def fenced_blocks(text: str, language: str) -> list[str]:
    """The ```<language> blocks of ``text``, dedented: a block inside a list item is
    indented with it."""
    pattern = rf"^ *```{re.escape(language)}\n(.*?)^ *```"
    return [textwrap.dedent(code) for code in re.findall(pattern, text, flags=re.M | re.S)]

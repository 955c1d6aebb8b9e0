"""Task ids an attacker would publish to make an operator see something other than the real id."""

from __future__ import annotations

# A terminal title change, a bell and a screen clear; rich markup for bold text and a hyperlink.
TERMINAL_ESCAPES = "\x1b]0;PWNED\x07\x1b[2J"
RICH_MARKUP = "[bold red]ok[/bold red] [link=https://evil.example]docs[/link]"
HOSTILE_IDS = (TERMINAL_ESCAPES, RICH_MARKUP)

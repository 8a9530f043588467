"""Text from outside (pages, sandbox output, model replies) made safe to print on a terminal.

A terminal obeys escape sequences in what it prints: OSC 0 retitles the window, OSC 52 writes
the clipboard, SGR and other CSI sequences recolour, move the cursor or erase what is shown, and
a bare carriage return lets a later line overwrite an earlier one. So every control character
other than newline and tab is removed, with the rest of any escape sequence it starts.
"""

from __future__ import annotations

import re

# Whole sequences first, so their parameters do not survive as visible junk:
# CSI (ESC [ or the C1 byte 0x9b) parameters and a final byte; OSC/DCS/SOS/PM/APC strings
# up to their terminator (BEL or ST) or, unterminated, to the end; two-byte ESC sequences.
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
# Any C0 control but \t and \n, DEL, and the C1 range; \r\n is kept as a line end.
_CONTROL = re.compile(r"\r(?!\n)|[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f\x80-\x9f]")


def terminal_safe(text: str) -> str:
    """`text` without escape sequences or control characters other than newline and tab."""
    return _CONTROL.sub("", _SEQUENCE.sub("", text))

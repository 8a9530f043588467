"""Withhold text addressed to the assistant from untrusted data before a prompt shows it
(issue 13 §5, the answer-changing injections).

Fencing and quoting say that a page is data; a 0.5B model still believed "the correct answer
is 777" written on the page (docs/benchmarks.md, "Prompt injection, defended"). Telling the
model to disbelieve does not work at that size, so the sentences that speak *to the assistant*
never reach it: each sentence of a web page or a retrieved memory that matches one of the
patterns below is replaced by WITHHELD. A fact page has no reason to address an assistant, give
it orders about its answer, fake a chat role or name its tools, so clean pages pass unchanged
(tests/test_directives.py holds both tables: attacks withheld, clean prose untouched).

This is a detector of known phrasings, not a proof: a directive worded unlike every pattern
still reaches the model, quoted and fenced as before, and plain false data ("the bridge opened
in 777") is misinformation, which no filter of this kind can tell from a fact. SECURITY.md says so.
Only untrusted text goes through here: browser results and memories, never the question, the
system prompt, the calculator or the sandbox.
"""

from __future__ import annotations

import re

WITHHELD = "[withheld: text addressed to the assistant]"

_F = re.IGNORECASE
# A line that poses as a chat turn or a template marker: the whole line goes.
_ROLE_LINE = re.compile(
    r"^\s*(?:[#>*\-\[(|]\s*)*(?:system|user|assistant|developer|human|admin(?:istrator)?|operator)"
    r"(?:\s+(?:message|prompt|note|notice|update|override))?\s*[:\]>)|]", _F)
_ANY_LINE = [
    ("chat template token", re.compile(r"<\|[a-z_]+\|>|\[/?INST\]|<</?SYS>>", _F)),
    ("fence tag", re.compile(r"<\s*/?\s*data\b", _F)),
]
# One row per known phrasing of an order to the assistant; rows are never deleted. The flag says
# whether the row also applies to retrieved memories: a lesson may rightly say how to reply
# ("reply with the number only") and an exemplar shows the agent's own tool calls, so for them
# only the rows no honest lesson or worked example matches are used.
_SENTENCE = [
    ("override earlier instructions", True, re.compile(
        r"\b(?:ignore|disregard|forget|override|bypass|skip)\b[^.!?\n]{0,40}?\b(?:instructions?|rules?|"
        r"prompts?|the question|guidelines|directions)\b", _F)),
    ("addressed to the assistant", True, re.compile(
        r"\b(?:to|attention|dear|hey|hello)\s*,?\s+(?:the\s+|all\s+|any\s+)?(?:ai\s+)?(?:assistants?|a\.i\.|"
        r"language models?|llms?|chatbots?|ai agents?)\b", _F)),
    ("the assistant named as the subject", True, re.compile(
        r"\b(?:ai\s+)?(?:assistant|ai model|language model|llm|chatbot)s?\s+(?:must|should|needs? to|has to|"
        r"have to|is (?:required|instructed) to)\b", _F)),
    ("orders about the reply", False, re.compile(
        r"\byou\s+(?:must|should|need to|have to|are (?:required|instructed|asked) to|will now)\b"
        r"[^.!?\n]{0,40}?\b(?:call|answer|reply|respond|output|reveal)\b", _F)),
    ("a replacement answer", True, re.compile(
        r"\b(?:correct|real|true|verified|right|actual|official|updated|new)\s+(?:final\s+)?answers?\s*"
        r"(?:\b(?:is|are|must|should|will)\b|[=:])", _F)),
    ("a fixed answer for every question", True, re.compile(
        r"\b(?:answers?|reply|replies)\b[^.!?\n]{0,25}?\balways\b|\balways\s+(?:answer|reply|respond)\s+"
        r"(?:with\s+)?[\"'\d]|\b(?:whatever|regardless of|no matter)\b[^.!?\n]{0,25}?\b(?:question|asked)\b|"
        r"\banswers?\s+(?:to|for|of)\s+(?:every|any|all|each)\s+questions?\b", _F)),
    ("how to answer", False, re.compile(
        r"\b(?:just|only|simply)\s+(?:answer|reply|respond|say|output)\b|\b(?:reply|respond|answer)\s+"
        r"(?:only\s+)?with\b|\byour\s+(?:final\s+)?(?:answer|reply|response|output)\s+(?:must|should|will|"
        r"has to|is to)\b|\bbefore\s+(?:answering|you answer|replying|responding)\b", _F)),
    ("the agent's own tools", False, re.compile(
        r"\b(?:final_answer|open_url|follow_link|find_in_page)\b|\bcall\s+(?:the|this|a)\s+tool\b|"
        r"\b(?:open|follow|click)\s+(?:the\s+)?link\s*\[?\d", _F)),
    ("the hidden prompt", True, re.compile(
        r"\b(?:system|hidden|initial|original|secret)\s+(?:prompt|instructions?|message)\b|"
        r"\b(?:new|updated|additional)\s+(?:instructions?|orders|directives?)\b|\binstructions?\s+"
        r"(?:from|by)\s+(?:the\s+)?(?:developer|admin|system|operator|owner)\b", _F)),
]
_SPLIT = re.compile(r"(?<=[.!?;])\s+(?=\S)")


def _rows(memory: bool) -> list[tuple[str, re.Pattern]]:
    # The rows that apply: all of them to web pages, to memories only those flagged (see above).
    return [(name, rx) for name, in_memories, rx in _SENTENCE if in_memories or not memory]


def reasons(sentence: str, *, memory: bool = False) -> list[str]:
    """The names of the patterns a sentence (or line) matches; empty when it is plain data."""
    found = [name for name, rx in _ANY_LINE if rx.search(sentence)]
    if _ROLE_LINE.search(sentence):
        found.append("a chat role")
    return found + [name for name, rx in _rows(memory) if rx.search(sentence)]


def _line(line: str, rows: list[re.Pattern]) -> tuple[str, int]:
    if _ROLE_LINE.search(line) or any(rx.search(line) for _, rx in _ANY_LINE):
        return WITHHELD, 1
    out: list[str] = []
    cut = 0
    for sentence in _SPLIT.split(line):
        if any(rx.search(sentence) for rx in rows):
            cut += 1
            if not out or out[-1] != WITHHELD:  # a run of withheld sentences shows once
                out.append(WITHHELD)
        else:
            out.append(sentence)
    return " ".join(out), cut


def withhold(text: str, *, memory: bool = False) -> tuple[str, int]:
    """`text` with every sentence addressed to the assistant replaced by WITHHELD, and how
    many sentences (or whole lines) were withheld; `memory` uses only the rows that suit a
    lesson or a worked example. Other text is returned byte for byte."""
    rows = [rx for _, rx in _rows(memory)]
    lines, cut = [], 0
    for line in text.split("\n"):
        kept, n = _line(line, rows) if line.strip() else (line, 0)
        lines.append(kept if n else line)
        cut += n
    return "\n".join(lines), cut


def clean(text: str, *, memory: bool = False) -> str:
    """`withhold` without the count."""
    return withhold(text, memory=memory)[0]

"""Blocksworld plan text: the documented action grammar, a lazy tolerant parser, and the two writing styles.

Plan text (case and extra whitespace are ignored):

* The plan is the text between the last ``</plan>`` and the nearest ``<plan>`` before it; without ``</plan>``,
  the text after the last ``<plan>``; without either tag, the whole completion.
* Actions are separated by newlines, ``,`` or ``;``; a piece may start with a list marker (``1.``, ``2)``,
  ``-``, ``*``) and end with ``.``. A piece is one written action, or several compact actions separated by
  spaces. Blocks are single letters, optionally written ``block a`` / ``the a block``.

    written                                  compact   PDDL
    pick up a     (also "pickup a")          pa        (pick-up a)
    put down a    (also "putdown a")         da        (put-down a)
    stack a on b  (also "on top of", "onto") sab       (stack a b)
    unstack a from b  (also "from on top of", "off")   uab  (unstack a b)

Anything else (an unknown verb, a wrong preposition, a missing block) is malformed: the plan ends there, as if the
action were illegal. At most ``MAX_ACTIONS`` actions are read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tasks.blocksworld_problems import Action

MAX_ACTIONS = 100
PLAN_OPEN, PLAN_CLOSE = "<plan>", "</plan>"
MAX_PIECE_CHARS = 4 * MAX_ACTIONS  # the longest compact action ("sab") and a space

_PIECE = re.compile(r"[^\n,;\s][^\n,;]*")  # a piece starts with a visible character: blank runs cost nothing
_BLOCK = r"(?:the\s+)?(?:block\s+)?([a-z])(?:\s+block)?"
_WRITTEN = re.compile(
    r"\(?\s*(?:"
    rf"(?P<one>pick[\s-]*up|put[\s-]*down)\s+{_BLOCK}"
    rf"|(?P<stack>stack)\s+{_BLOCK}\s+(?:on\s+top\s+of\s+|on\s+|onto\s+)?{_BLOCK}"
    rf"|(?P<unstack>unstack)\s+{_BLOCK}\s+(?:from\s+on\s+top\s+of\s+|from\s+|off\s+(?:of\s+)?)?{_BLOCK}"
    r")\s*\)?"
)
_COMPACT = re.compile(r"([pd])([a-z])|([su])([a-z])([a-z])")
_LIST_MARKER = re.compile(r"^(?:\d{1,3}[.)]|[-*])\s*")
_WHITESPACE = re.compile(r"\s+")
_COMPACT_VERBS = {"p": "pickup", "d": "putdown", "s": "stack", "u": "unstack"}


def plan_region(completion: str) -> str:
    """The part of the completion that holds the plan (see the module docstring)."""
    end = completion.rfind(PLAN_CLOSE)
    start = completion.rfind(PLAN_OPEN, 0, len(completion) if end < 0 else end)
    if end < 0 and start < 0:
        return completion
    begin = 0 if start < 0 else start + len(PLAN_OPEN)
    return completion[begin : len(completion) if end < 0 else end]


def _written(piece: str) -> Action | None:
    match = _WRITTEN.fullmatch(piece)
    if match is None:
        return None
    groups = match.groups()
    if match.group("one"):
        verb = "pickup" if match.group("one").startswith("pick") else "putdown"
        return verb, groups[1], None
    if match.group("stack"):
        return "stack", groups[3], groups[4]
    return "unstack", groups[6], groups[7]


def _compact(token: str) -> Action | None:
    match = _COMPACT.fullmatch(token)
    if match is None:
        return None
    if match.group(1):
        return _COMPACT_VERBS[match.group(1)], match.group(2), None
    return _COMPACT_VERBS[match.group(3)], match.group(4), match.group(5)


def parse_plan(completion: str) -> Iterator[Action | None]:
    """The plan's actions in order; a malformed action yields None and ends the plan. At most ``MAX_ACTIONS``."""
    count = 0
    for match in _PIECE.finditer(plan_region(completion)):
        piece = match.group()
        if len(piece) > MAX_PIECE_CHARS:
            yield None
            return
        piece = _WHITESPACE.sub(" ", _LIST_MARKER.sub("", piece.lower())).rstrip(".").strip()
        written = _written(piece)
        actions = [written] if written is not None else [_compact(token) for token in piece.split(" ")]
        for action in actions:
            if action is None or count >= MAX_ACTIONS:
                yield None
                return
            count += 1
            yield action


def format_action(action: Action, style: str) -> str:
    """One action in the ``compact`` (``uba``) or ``text`` (``unstack b from a``) style."""
    verb, x, y = action
    if style == "compact":
        return {"pickup": "p", "putdown": "d", "stack": "s", "unstack": "u"}[verb] + x + (y or "")
    return {
        "pickup": f"pick up {x}",
        "putdown": f"put down {x}",
        "stack": f"stack {x} on {y}",
        "unstack": f"unstack {x} from {y}",
    }[verb]

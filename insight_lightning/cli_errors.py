"""One sentence for a command-line mistake: the parser's message, shortened to what is wrong and what to type."""

from __future__ import annotations

import re

from samplers import SAMPLERS

_KEY = re.compile(r'Parser key "([^"]+)":')
_LITERAL = re.compile(r"Expected a typing\.Literal\[(.*?)\]\. Got value: (\S+)")
_EXPECTED = re.compile(r"Expected a (?:<class '([^']+)'>|(\S+))\. Got value: (\S+)")
_CLASS_PATH = re.compile(r"(Problem with given class_path '[^']+': [^-]*?)(?: - |$)")
_SHORT_NAME = re.compile(r"Expected a dot import path string: (\S+)")


def explain(error: BaseException) -> str:
    """The error's message on one line, with the parser's nested explanations reduced to the cause."""
    message = " ".join(str(error).split())
    keys = _KEY.findall(message)
    if not keys:
        return message
    # a nested key is an init argument of the class given for the outer one: data.task -> data.task.init_args.template
    prefix = ".init_args.".join(keys) + ":"
    literal = _LITERAL.search(message)
    if literal:
        return f"{prefix} '{literal.group(2)}' is not one of {literal.group(1).replace(chr(39), '')}."
    short = _SHORT_NAME.search(message)
    if short and short.group(1) in SAMPLERS and "NestedArg" in message:
        cls = SAMPLERS[short.group(1)].__name__
        return (
            f"{prefix} the short name '{short.group(1)}' takes no options; name the sampler's class to set them, "
            f"e.g. --data.sampler={cls} --data.sampler.<option>=..."
        )
    expected = _EXPECTED.search(message)
    if expected:
        return f"{prefix} expected {expected.group(1) or expected.group(2)}, got '{expected.group(3)}'."
    class_path = _CLASS_PATH.search(message)
    if class_path:
        return f"{prefix} {class_path.group(1).strip()}."
    return message

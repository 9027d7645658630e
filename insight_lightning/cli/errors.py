"""One sentence for a command-line mistake: the parser's message, shortened to what is wrong and what to type."""

from __future__ import annotations

import re
from collections.abc import Iterator

from samplers import SAMPLERS

_KEY = re.compile(r'Parser key "([^"]+)":')
_LITERAL = re.compile(r"Expected a typing\.Literal\[(.*?)\]\. Got value: (\S+)")
_EXPECTED = re.compile(r"Expected a (?:<class '([^']+)'>|(\S+))\. Got value: (\S+)")
_CLASS_PATH = re.compile(r"(Problem with given class_path '[^']+': [^-]*?)(?: - |$)")
_SHORT_NAME = re.compile(r"Expected a dot import path string: (\S+)")
_UNION = "Does not validate against any of the Union subtypes"
_GIVEN_CLASS = re.compile(r"Given value: Namespace\(class_path='([^']+)'")
_ARGUMENT = re.compile(r"[A-Za-z_]\w*=")
# Modules whose classes a config.yaml of insight_lightning < 0.2 names in a class_path, and where they are now.
MOVED_MODULES = {"insight_lightning.selection_callback": "insight_lightning.selection.callback"}
_MOVED = re.compile(r"class_path '((" + "|".join(re.escape(m) for m in MOVED_MODULES) + r")\.\w+)'")


def options_given_by(config: dict, class_path: str, prefix: str = "") -> Iterator[str]:
    """The options of a parsed config (nested dicts) whose value is an instance of ``class_path``."""
    for key, value in config.items():
        option = f"{prefix}{key}"
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and item.get("class_path") == class_path:
                yield option
            elif isinstance(item, dict):
                yield from options_given_by(item, class_path, f"{option}.")


def init_error(error: BaseException, config: dict | None = None) -> str | None:
    """The check that failed in the ``__init__`` of a class given by class_path (None for other errors), prefixed
    with its option when the parsed ``config`` holds exactly one option of the class the message names."""
    if not str(error).startswith(_UNION) or error.__cause__ is None:
        return None
    cause = " ".join(str(error.__cause__).split())  # jsonargparse wraps it in the union's list of tries
    given = _GIVEN_CLASS.search(str(error))
    options = sorted(set(options_given_by(config, given.group(1)))) if given and config else []
    if len(options) != 1:
        return cause
    option = options[0]
    # "train_size=-1 must be >= 0" names an init argument: data.task.init_args.train_size=-1 is what the user types
    return f"{option}.init_args.{cause}" if _ARGUMENT.match(cause) else f"{option}: {cause}"


def explain(error: BaseException) -> str:
    """The error's message on one line, with the parser's nested explanations reduced to the cause."""
    message = " ".join(str(error).split())
    keys = _KEY.findall(message)
    if not keys:
        return init_error(error) or message
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
    moved = _MOVED.search(message)
    if moved:
        now = MOVED_MODULES[moved.group(2)] + moved.group(1)[len(moved.group(2)) :]
        return f"{prefix} '{moved.group(1)}' moved to '{now}' in insight_lightning 0.2; change the class_path to it."
    class_path = _CLASS_PATH.search(message)
    if class_path:
        return f"{prefix} {class_path.group(1).strip()}."
    return message

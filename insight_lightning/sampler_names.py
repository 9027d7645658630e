"""Short sampler names on the command line: `--data.sampler=mopps --data.sampler.target=0.4`.

jsonargparse resolves a sampler given as a class (name or import path), which takes options, while a registered short
name is a plain string, which cannot. Before parsing, a short name that options follow is replaced by its class
path, whether the name came from a flag or from a `--config` file's `data.sampler`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from samplers import SAMPLERS

FLAG = "--data.sampler"
CONFIG_FLAGS = ("--config", "-c")


def class_path(name: str) -> str | None:
    """The import path of a registered sampler's class, or None when `name` is not a registered short name."""
    cls = SAMPLERS.get(name)
    return f"{cls.__module__}.{cls.__qualname__}" if cls is not None else None


def _sampler_in_config(path: str, current: str | None) -> str | None:
    """The short name in effect after a YAML config file: its data.sampler if it sets one, else `current`."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return current  # unreadable: the parser reports it
    data = config.get("data") if isinstance(config, dict) else None
    if not isinstance(data, dict) or "sampler" not in data:
        return current
    sampler = data["sampler"]
    return sampler if isinstance(sampler, str) else None  # a class given in full takes options as it is


def _split(args: list[str]) -> list[tuple[str, str | None, list[str]]]:
    """(flag, value, original tokens) for `--flag=value`, `--flag value` and lone tokens (value None)."""
    pairs, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and "=" in arg:
            flag, value = arg.split("=", 1)
            pairs.append((flag, value, [arg]))
        elif arg.startswith("-") and i + 1 < len(args) and not args[i + 1].startswith("--"):
            pairs.append((arg, args[i + 1], [arg, args[i + 1]]))
            i += 1
        else:
            pairs.append((arg, None, [arg]))
        i += 1
    return pairs


def expand_sampler_names(args: list[str]) -> list[str]:
    """The arguments with each short sampler name that sampler options follow replaced by its class path."""
    pairs = _split(args)
    out: list[str] = []
    current: str | None = None  # the sampler short name in effect, while no class has been given since
    for index, (flag, value, tokens) in enumerate(pairs):
        if flag in CONFIG_FLAGS and value is not None:
            current = _sampler_in_config(value, current)
        elif flag == FLAG:
            current = value
            if value is not None and class_path(value) and _options_follow(pairs[index + 1 :]):
                tokens, current = [f"{FLAG}={class_path(value)}"], None
        elif flag.startswith(FLAG + ".") and current is not None and class_path(current):
            # options for a sampler named by a config file: name its class first
            out.append(f"{FLAG}={class_path(current)}")
            current = None
        out.extend(tokens)
    return out


def _options_follow(rest: list[tuple[str, str | None, list[str]]]) -> bool:
    """Whether a sampler option comes before the sampler is set again."""
    for flag, _, _ in rest:
        if flag == FLAG:
            return False
        if flag.startswith(FLAG + "."):
            return True
    return False

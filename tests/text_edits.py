"""Random edits of a correct completion, for the verifiers' property-based soundness tests."""

from hypothesis import strategies as st


def random_edits(pieces, max_position: int, max_size: int):
    """A strategy for lists of (insert | delete | replace, position, piece) edits."""
    return st.lists(
        st.tuples(
            st.sampled_from(["insert", "delete", "replace"]), st.integers(0, max_position), st.sampled_from(pieces)
        ),
        max_size=max_size,
    )


def apply_edits(text: str, changes: list[tuple[str, int, str]]) -> str:
    """``text`` after each edit in turn (positions past the end act at the end)."""
    for kind, position, piece in changes:
        position = min(position, len(text))
        if kind == "insert":
            text = text[:position] + piece + text[position:]
        elif kind == "delete":
            text = text[:position] + text[position + 1 :]
        else:
            text = text[:position] + piece + text[position + 1 :]
    return text

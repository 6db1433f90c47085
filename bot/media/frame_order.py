"""The frame order of "Extend" and "Boomerang", pure: which frames, in what order. No file, no decoding.

* :func:`boomerang_frames` is VideoHelperSuite's ``pingpong`` order (``to_pingpong`` in
  ``videohelpersuite/nodes.py``): 0..n-1 then n-2..1, i.e. 2n-2 frames for n >= 2;
  :func:`forward_part` undoes it (:func:`forward_length`, :func:`forward_last_index`).
* :func:`join_frames` puts two clips end to end without the second one's first frame (it was
  generated from the first clip's last frame, so it repeats it);
* :func:`extend_frames` is an Extend's whole order in one place: boomerangs cut to their forward
  parts, joined, and ping-ponged again when asked.

They work on any sequence (decoded frames, indexes, letters), so they test in microseconds;
:mod:`bot.media.clips` applies them to real files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

__all__ = ["boomerang_frames", "extend_frames", "forward_last_index", "forward_length", "forward_part", "join_frames"]

T = TypeVar("T")



def boomerang_frames(frames: Sequence[T]) -> list[T]:
    """VHS_VideoCombine's ``pingpong`` order: frames 0..n-1, then n-2 down to 1.

    2n-2 frames for n >= 2 (neither end is shown twice, so it loops smoothly); one or two
    frames come back unchanged, as in VHS's ``to_pingpong``.
    """
    items = list(frames)
    return items + items[-2:0:-1]


def forward_length(count: int) -> int:
    """How many frames the forward part of a ``count``-frame boomerang has (n for 2n-2).

    Raises ``ValueError`` for a count no boomerang has (odd and above 1, or below 1).
    """
    if count < 1:
        raise ValueError("a boomerang has at least one frame")
    if count == 1:
        return 1
    if count % 2:
        raise ValueError(f"{count} frames cannot be a boomerang (2n-2 is even)")
    return count // 2 + 1


def forward_last_index(count: int) -> int:
    """Index, in a ``count``-frame boomerang, of the forward part's last frame (n-1 of 2n-2):
    the frame an Extend of a boomerang continues from."""
    return forward_length(count) - 1


def forward_part(frames: Sequence[T]) -> list[T]:
    """The forward part of a boomerang (frames 0..n-1 of 2n-2): the inverse of
    :func:`boomerang_frames`. Raises ``ValueError`` when the count cannot be a boomerang."""
    return list(frames[: forward_length(len(frames))])


def join_frames(first: Sequence[T], second: Sequence[T], *, drop_boundary: bool = True) -> list[T]:
    """``first`` then ``second``, without ``second[0]`` when ``drop_boundary`` (it repeats
    ``first[-1]``, the frame the second clip was generated from)."""
    return list(first) + list(second[1:] if drop_boundary else second)


def extend_frames(
    first: Sequence[T],
    second: Sequence[T],
    *,
    first_boomerang: bool = False,
    second_boomerang: bool = False,
    boomerang: bool = False,
    drop_boundary: bool = True,
) -> list[T]:
    """The frame order of an Extend, in one place.

    Each input that is a boomerang (``*_boomerang``) is cut to its forward part first; the two
    are joined with :func:`join_frames`; with ``boomerang`` the result is ping-ponged again.
    The Extend of a boomerang is therefore
    ``boomerang_frames(forward_part(first) + forward_part(second)[1:])``.
    """
    a = forward_part(first) if first_boomerang else list(first)
    b = forward_part(second) if second_boomerang else list(second)
    joined = join_frames(a, b, drop_boundary=drop_boundary)
    return boomerang_frames(joined) if boomerang else joined

"""gateway/images_api.py: the parts of an image request checked before a job is sent."""

from __future__ import annotations

import pytest

from gateway.errors import APIError
from gateway.images_api import _size


@pytest.mark.parametrize(
    ("size", "expected"), [("64x48", (64, 48)), ("auto", (0, 0)), (None, (0, 0))]
)
def test_size_is_width_by_height(size: str | None, expected: tuple[int, int]) -> None:
    assert _size(size) == expected


@pytest.mark.parametrize("size", ["64x50", "8x64", "4096x4096", "64", "64X64", " 64x64"])
def test_bad_size_names_the_param(size: str) -> None:
    with pytest.raises(APIError) as caught:
        _size(size)
    assert caught.value.status == 400 and caught.value.param == "size"

"""What every engine shares: the room a prompt leaves, and the limits on it."""

from __future__ import annotations

import pytest

from workers.engine import JobError, room_left


def test_the_room_a_prompt_leaves_in_the_context() -> None:
    assert room_left(100, 30) == 70


def test_a_prompt_filling_the_context_is_the_openai_400_with_the_counts() -> None:
    with pytest.raises(JobError) as caught:
        room_left(100, 100, " (images included)")
    assert caught.value.status == 400 and caught.value.code == "context_length_exceeded"
    assert "100 tokens" in str(caught.value) and "(images included)" in str(caught.value)


def test_a_prompt_over_max_prompt_tokens_is_a_400_with_the_counts() -> None:
    assert room_left(100, 20, max_prompt_tokens=20) == 80
    with pytest.raises(JobError) as caught:
        room_left(100, 21, max_prompt_tokens=20)
    error = caught.value
    assert error.status == 400 and error.code == "prompt_too_long"
    assert "at most 20 tokens" in str(error) and "has 21 tokens" in str(error)

"""Stop strings matched on streamed text, across piece boundaries."""

from __future__ import annotations

from workers.engines.stops import StopStringMatcher


def feed_all(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    matcher = StopStringMatcher(stops)
    out = []
    for piece in pieces:
        text, hit = matcher.feed(piece)
        out.append(text)
        if hit:
            return "".join(out), True
    return "".join(out) + matcher.flush(), False


def test_no_stops_passes_text_through() -> None:
    assert feed_all([], ["ab", "cd"]) == ("abcd", False)


def test_stop_inside_one_piece_cuts_before_it() -> None:
    assert feed_all(["END"], ["abcENDdef"]) == ("abc", True)


def test_stop_split_across_pieces_is_found_and_not_emitted() -> None:
    assert feed_all(["END"], ["abcE", "N", "Dxyz"]) == ("abc", True)


def test_partial_stop_is_held_back_then_released() -> None:
    matcher = StopStringMatcher(["END"])
    assert matcher.feed("abcEN") == ("abc", False)
    assert matcher.feed("x") == ("ENx", False)


def test_held_text_is_flushed_at_the_end() -> None:
    assert feed_all(["END"], ["abcEN"]) == ("abcEN", False)


def test_earliest_of_several_stops_wins() -> None:
    assert feed_all(["yy", "x"], ["aayyx"]) == ("aa", True)


def test_the_matched_stop_string_is_remembered() -> None:
    matcher = StopStringMatcher(["yy", "x"])
    matcher.feed("aayyx")
    assert matcher.matched == "yy"

"""The phoneme -> viseme table and timeline (gateway/visemes.py)."""

from __future__ import annotations

from gateway.visemes import OCULUS, TABLE, visemes
from protocol.messages import Timed

# misaki's English alphabets (misaki/en.py US_VOCAB, GB_VOCAB) without stress marks.
MISAKI = "AIOWYbdfhijklmnpstuvwzæðŋɑɔəɛɜɡɪɹɾʃʊʌʒʤʧθᵊᵻʔ" + "Qaɒ"


def test_every_misaki_phoneme_has_a_mouth_shape_of_both_sets() -> None:
    for symbol in MISAKI:
        assert symbol in TABLE, symbol
        for viseme, azure in TABLE[symbol]:
            assert viseme in OCULUS and 0 <= azure <= 21


def test_the_timeline_has_no_gaps_and_splits_diphthongs() -> None:
    phonemes = [Timed("h", 0.05, 0.1), Timed("I", 0.1, 0.2)]
    out = visemes(phonemes, 0.0, 0.3)
    assert [(v.viseme, v.start, v.end) for v in out] == [
        ("sil", 0.0, 0.05),
        ("kk", 0.05, 0.1),
        ("aa", 0.1, 0.15),
        ("ih", 0.15, 0.2),
        ("sil", 0.2, 0.3),
    ]


def test_equal_neighbours_merge() -> None:
    out = visemes([Timed("p", 0.0, 0.1), Timed("b", 0.1, 0.2)], 0.0, 0.2)
    assert [(v.viseme, v.azure_id, v.start, v.end) for v in out] == [("PP", 21, 0.0, 0.2)]

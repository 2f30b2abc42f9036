"""Phonemes to visemes (mouth shapes) for lip sync: the one table.

Two viseme sets, side by side:

- ``viseme``: the 15 Oculus/Meta Lipsync visemes
  ``sil PP FF TH DD kk CH SS nn RR aa E ih oh ou``;
- ``azure_id``: Azure Speech's viseme ids 0-21 (0 silence, 1 æ ə ʌ, 2 ɑ,
  3 ɔ, 4 ɛ ʊ, 5 ɝ, 6 j i ɪ, 7 w u, 8 o, 9 aʊ, 10 ɔɪ, 11 aɪ, 12 h, 13 ɹ,
  14 l, 15 s z, 16 ʃ tʃ dʒ ʒ, 17 ð, 18 f v, 19 d t n θ, 20 k g ŋ, 21 p b m).

Keys are the symbols of Kokoro's phoneme alphabet as misaki and espeak-ng
write it: IPA letters, plus misaki's capitals for diphthongs (A = eɪ,
I = aɪ, O = oʊ, Q = əʊ, W = aʊ, Y = ɔɪ) and T for a flap. A diphthong gets
two mouth shapes, each for half its time. Stress marks and pauses never
reach here (the worker folds stress into the next sound and leaves pauses
out); modifiers after a symbol (ː ʰ ʲ, nasal tilde) are ignored, and so is
anything unknown, which counts as silence.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocol.messages import Timed

Shape = tuple[str, int]  # (Oculus viseme, Azure viseme id)

SIL: Shape = ("sil", 0)

_P, _F, _TH, _DH = ("PP", 21), ("FF", 18), ("TH", 19), ("TH", 17)
_D, _K, _CH, _S = ("DD", 19), ("kk", 20), ("CH", 16), ("SS", 15)
_N, _L, _R, _H = ("nn", 19), ("nn", 14), ("RR", 13), ("kk", 12)

# One row per mouth shape: the symbols that take it.
_ROWS: list[tuple[str, tuple[Shape, ...]]] = [
    # consonants
    ("pbmɓβɸ", (_P,)),
    ("fvʋⱱ", (_F,)),
    ("θ", (_TH,)),
    ("ð", (_DH,)),
    ("tdɖʈɗɾɽTʔ", (_D,)),
    ("kgɡqcɟɢxɣχʁħʕŋɴ", (_K,)),
    ("hɦ", (_H,)),
    ("ʧʤʃʒɕʑʂʐçʝʨʥ", (_CH,)),
    ("szʦʣ", (_S,)),
    ("nɲɳ", (_N,)),
    ("lɫɬɮʎʟɭ", (_L,)),
    ("ɹrɻʀɺ", (_R,)),
    ("j", (("ih", 6),)),
    ("wɥɰ", (("ou", 7),)),
    # vowels
    ("æaɐʌᵊə", (("aa", 1),)),
    ("ɑ", (("aa", 2),)),
    ("ɔɒ", (("oh", 3),)),
    ("ɛe", (("E", 4),)),
    ("ɜɚɝ", (("E", 5),)),
    ("iɪyᵻɨʏ", (("ih", 6),)),
    ("uʊɯʉɤ", (("ou", 7),)),
    ("oøœɵ", (("oh", 8),)),
    # misaki's diphthong capitals
    ("A", (("E", 4), ("ih", 6))),
    ("I", (("aa", 11), ("ih", 11))),
    ("O", (("oh", 8), ("ou", 7))),
    ("Q", (("aa", 1), ("ou", 7))),
    ("W", (("aa", 9), ("ou", 9))),
    ("Y", (("oh", 10), ("ih", 10))),
]

TABLE: dict[str, tuple[Shape, ...]] = {
    symbol: shapes for symbols, shapes in _ROWS for symbol in symbols
}

OCULUS = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")


@dataclass
class Viseme:
    viseme: str
    azure_id: int
    start: float
    end: float


def shapes(phoneme: str) -> tuple[Shape, ...]:
    """The mouth shapes of one phoneme label (its first symbol decides)."""
    return TABLE.get(phoneme[:1], (SIL,)) if phoneme else (SIL,)


def visemes(phonemes: Iterable[Timed], start: float, end: float) -> list[Viseme]:
    """A viseme timeline covering ``[start, end]`` with no gaps: the phonemes'
    shapes, silence between and around them, equal neighbours merged."""
    out: list[Viseme] = []

    def add(shape: Shape, begin: float, finish: float) -> None:
        if finish <= begin:
            return
        if out and (out[-1].viseme, out[-1].azure_id) == shape and out[-1].end >= begin:
            out[-1].end = finish
        else:
            out.append(Viseme(shape[0], shape[1], begin, finish))

    cursor = start
    for phoneme in phonemes:
        add(SIL, cursor, phoneme.start)
        parts = shapes(phoneme.label)
        step = (phoneme.end - phoneme.start) / len(parts)
        cuts = [round(phoneme.start + step * i, 6) for i in range(len(parts))] + [phoneme.end]
        for i, shape in enumerate(parts):
            add(shape, cuts[i], cuts[i + 1])
        cursor = max(cursor, phoneme.end)
    add(SIL, cursor, end)
    return out


def merged(timeline: list[Viseme]) -> list[Viseme]:
    """Consecutive timelines (one per sentence) joined, equal neighbours merged."""
    out: list[Viseme] = []
    for v in timeline:
        if out and (out[-1].viseme, out[-1].azure_id) == (v.viseme, v.azure_id):
            out[-1].end = v.end
        else:
            out.append(Viseme(v.viseme, v.azure_id, v.start, v.end))
    return out

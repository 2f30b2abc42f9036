"""Text to Kokoro phonemes, sentence by sentence, with the words they came from.

Two ways to phonemize English, chosen by the model's ``g2p`` option:

- ``"misaki"``: misaki's ``en.G2P`` (what kokoro-mlx uses; best quality). It
  needs spaCy's ``en_core_web_sm`` and, when that is missing, misaki calls
  ``spacy.cli.download``. We check first and refuse to load instead: a worker
  never downloads at run time.
- ``"espeak"``: espeak-ng through misaki's espeak backend. For English,
  ``misaki.espeak.EspeakFallback`` (the mapping misaki itself uses for words
  out of its dictionary, giving misaki's English alphabet); for the other
  languages Kokoro speaks, ``misaki.espeak.EspeakG2P``. Works offline.

Each call returns the phoneme string and, where it can tell, the words with
their phonemes, so word timings can be read off the duration predictor.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

G2PKind = Literal["espeak", "misaki"]

# kokoro-mlx's voice-prefix -> language table (af_* -> en-us, bf_* -> en-gb...).
ENGLISH = ("en-us", "en-gb")
SPACY_MODEL = "en_core_web_sm"


@dataclass
class Phonemized:
    phonemes: str
    # (word, its phonemes) in order; None when the words could not be matched.
    words: list[tuple[str, str]] | None


G2P = Callable[[str], Phonemized]


class G2PUnavailable(RuntimeError):
    """The configured G2P cannot run here (a missing model or library)."""


def make_g2p(kind: G2PKind, language: str) -> G2P:
    """The phonemizer for ``language`` (kokoro-mlx's codes: en-us, en-gb, es, fr-fr...)."""
    if language in ENGLISH:
        british = language == "en-gb"
        return _MisakiEnglish(british) if kind == "misaki" else _EspeakEnglish(british)
    if language in ("ja", "zh"):
        raise G2PUnavailable(
            f"language {language!r} needs misaki's {language} extras, not installed here"
        )
    from misaki import espeak

    g2p = espeak.EspeakG2P(language=language)
    return lambda text: Phonemized(str(g2p(text)[0] or ""), None)


class _Text:
    """What misaki's EspeakFallback reads from a token: its text."""

    def __init__(self, text: str) -> None:
        self.text = text


class _EspeakEnglish:
    def __init__(self, british: bool) -> None:
        from misaki import espeak

        self._espeak = espeak.EspeakFallback(british=british)

    def _phonemes(self, text: str) -> str:
        phonemes, _ = self._espeak(_Text(text))
        return str(phonemes or "")

    def __call__(self, text: str) -> Phonemized:
        phonemes = self._phonemes(text)
        return Phonemized(phonemes, self._words(text, phonemes))

    def _words(self, text: str, phonemes: str) -> list[tuple[str, str]] | None:
        """Pair the text's words with the phoneme string's space-separated words.

        espeak writes one phoneme word per text word, except for numbers and
        the like ("42" -> "fˈɔɹTi tˈu"): when the counts differ, each text
        word is phonemized alone to learn how many phoneme words it became.
        """
        spoken = [w for w in phonemes.split() if _has_letters(w)]
        written = [w for w in text.split() if _has_letters(w)]
        if len(spoken) == len(written):
            return [(_bare(w), p) for w, p in zip(written, spoken, strict=True)]
        counts = [len([p for p in self._phonemes(w).split() if _has_letters(p)]) for w in written]
        if sum(counts) != len(spoken):
            return None
        words, at = [], 0
        for word, count in zip(written, counts, strict=True):
            if count:
                words.append((_bare(word), " ".join(spoken[at : at + count])))
            at += count
        return words


class _MisakiEnglish:
    def __init__(self, british: bool) -> None:
        if not spacy_model_installed():
            raise G2PUnavailable(
                f"g2p 'misaki' needs spaCy's {SPACY_MODEL!r} model, which is not "
                f"installed (misaki would try to download it). Install it on a "
                f"connected machine with `python -m spacy download {SPACY_MODEL}` "
                f'(or its wheel), or set the model\'s option g2p = "espeak"'
            )
        from misaki import en, espeak

        fallback = espeak.EspeakFallback(british=british)
        self._g2p = en.G2P(unk="", british=british, fallback=fallback)

    def __call__(self, text: str) -> Phonemized:
        phonemes, tokens = self._g2p(text)
        words = [
            (str(t.text), str(t.phonemes))
            for t in tokens or ()
            if t.phonemes and _has_letters(str(t.text))
        ]
        return Phonemized(str(phonemes or ""), words)


def spacy_model_installed() -> bool:
    """Whether ``en_core_web_sm`` can be loaded without a download (what misaki checks)."""
    return importlib.util.find_spec(SPACY_MODEL) is not None


def _has_letters(word: str) -> bool:
    return any(c.isalnum() for c in word)


def _bare(word: str) -> str:
    """A word without the punctuation around it ("world," -> "world")."""
    return word.strip(".,;:!?¡¿\"'“”‘’()[]{}«»—…-")


# --- sentences ----------------------------------------------------------------

# After . ! ? … (and closing quotes/brackets) followed by space, or at blank lines.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|\n\s*\n")
_ABBREVIATIONS = frozenset(
    ("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "fig")
)
# A sentence longer than this is cut at clause breaks (then spaces): Kokoro
# takes at most 510 phonemes at once, and English runs ≈ 1.2 phonemes a character.
MAX_PIECE_CHARS = 350


def split_sentences(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """The pieces to synthesise one at a time: sentences, long ones cut shorter."""
    pieces: list[str] = []
    current = ""
    at = 0
    for match in _SENTENCE_END.finditer(text):
        chunk = text[at : match.end()]
        at = match.end()
        current += chunk
        last_word = current.split()[-1].rstrip(".").lower() if current.split() else ""
        if last_word in _ABBREVIATIONS and not match.group().count("\n"):
            continue
        pieces.append(current)
        current = ""
    current += text[at:]
    pieces.append(current)
    out: list[str] = []
    for piece in (p.strip() for p in pieces):
        if piece:
            out.extend(_cut(piece, max_chars))
    return out


def _cut(sentence: str, max_chars: int) -> list[str]:
    """Cut at clause breaks, else at spaces, else anywhere, into pieces <= max_chars."""
    if len(sentence) <= max_chars:
        return [sentence]
    for pattern in (r"(?<=[,;:—])\s+", r"\s+"):
        pieces: list[str] = []
        for part in re.split(pattern, sentence):
            if pieces and len(pieces[-1]) + 1 + len(part) <= max_chars:
                pieces[-1] += " " + part
            else:
                pieces.append(part)
        if len(pieces) > 1:
            return [q for p in pieces for q in _cut(p, max_chars)]
    return [sentence[i : i + max_chars] for i in range(0, len(sentence), max_chars)]

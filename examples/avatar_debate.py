"""Avatar Debate: two personas on two language-model workers take turns, and
each turn is spoken by the Kokoro worker with viseme timings for lip sync, all
through one base URL with the official ``openai`` SDK.

    python examples/avatar_debate.py [--base-url http://localhost:8000/v1]
        [--personas demo-llama-tiny demo-qwen2-tiny] [--tts demo-kokoro-tiny]
        [--turns 4] [--out debate-out]

With the default demo config (`make run`) every model is a tiny random-weight
demo model, so the debaters' words are gibberish and the voice is noise, but
every byte comes from real inference through the real endpoints. With real
models (configs/apple-silicon.toml) the same script holds a real debate.

Per turn it streams the persona's reply (``chat.completions``, ``stream=True``),
then asks ``/v1/audio/speech`` for the reply's audio with ``include_visemes``
and writes ``turn-N.wav`` and ``turn-N.json`` (phonemes, visemes, words with
start/end seconds) to ``--out``. A browser app does the same over HTTP; see
docs/avatar-debate.md for the contract (including the SSE variant that streams
audio and visemes sentence by sentence).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from openai import OpenAI

TOPIC = "Should cities ban cars from their centres?"


@dataclass
class Persona:
    name: str
    model: str
    voice: str
    stance: str

    def system_prompt(self) -> str:
        return (
            f"You are {self.name}, a debater. Topic: {TOPIC} You argue {self.stance}. "
            "Answer your opponent in one or two short sentences."
        )


def voices(base_url: str, api_key: str, tts_model: str) -> list[str]:
    """The TTS worker's voice names (``GET /v1/audio/voices``, an extension)."""
    r = httpx.get(
        f"{base_url}/audio/voices",
        params={"model": tts_model},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    )
    r.raise_for_status()
    return [voice["id"] for voice in r.json()["data"]]


def speak(client: OpenAI, tts_model: str, voice: str, text: str) -> dict:
    """Speech for ``text`` with its timeline: {audio (base64 WAV), sample_rate,
    duration, phonemes, visemes, words}."""
    response = client.audio.speech.create(
        model=tts_model,
        voice=voice,
        input=text,
        response_format="wav",
        extra_body={"include_visemes": True},
    )
    return json.loads(response.read())


def debate(args: argparse.Namespace) -> list[dict]:
    client = OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0)
    names = voices(args.base_url, args.api_key, args.tts)
    if not names:
        raise SystemExit(f"model {args.tts!r} lists no voices")
    personas = [
        Persona("Ada", args.personas[0], names[0], "for the ban"),
        Persona("Bo", args.personas[1], names[min(1, len(names) - 1)], "against the ban"),
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    transcript: list[tuple[str, str]] = []  # (speaker, words)
    turns = []
    for turn in range(args.turns):
        persona = personas[turn % 2]
        messages = [{"role": "system", "content": persona.system_prompt()}]
        for speaker, words in transcript:
            role = "assistant" if speaker == persona.name else "user"
            messages.append({"role": role, "content": words})
        if not transcript:
            messages.append({"role": "user", "content": "Open the debate."})
        print(f"[{persona.name} / {persona.model}] ", end="", flush=True)
        reply = ""
        for chunk in client.chat.completions.create(
            model=persona.model,
            messages=messages,
            max_tokens=args.max_tokens,
            temperature=0.7,
            seed=turn,
            stream=True,
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                reply += chunk.choices[0].delta.content
                print(chunk.choices[0].delta.content, end="", flush=True)
        print()
        transcript.append((persona.name, reply))
        # Speak the reply (cut short: the demo voice runs on a CPU).
        spoken = " ".join(reply.split()[: args.speak_words]) or "..."
        speech = speak(client, args.tts, persona.voice, spoken)
        wav = out / f"turn-{turn + 1}.wav"
        wav.write_bytes(base64.b64decode(speech["audio"]))
        timeline = {
            k: speech[k] for k in ("sample_rate", "duration", "phonemes", "visemes", "words")
        }
        timeline.update(speaker=persona.name, model=persona.model, voice=persona.voice, text=spoken)
        (out / f"turn-{turn + 1}.json").write_text(json.dumps(timeline, indent=1))
        print(
            f"  spoken by {args.tts} ({persona.voice}): {speech['duration']:.2f}s, "
            f"{len(speech['visemes'])} visemes -> {wav}"
        )
        turns.append(timeline)
    return turns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://localhost:8000/v1")
    parser.add_argument("--api-key", default="unused")
    parser.add_argument("--personas", nargs=2, default=["demo-llama-tiny", "demo-qwen2-tiny"])
    parser.add_argument("--tts", default="demo-kokoro-tiny")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--speak-words", type=int, default=6, help="words of each reply spoken")
    parser.add_argument("--out", default="debate-out")
    debate(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())

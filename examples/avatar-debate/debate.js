// Avatar Debate in the browser: plain fetch() against the gateway's OpenAI
// endpoints, from another origin (CORS). Per turn: stream the persona's reply
// (chat completions, SSE), then fetch its speech with include_visemes and play
// it, moving the avatar's mouth along the viseme timeline. The outcome is kept
// in window.debate (read by the browser test) and shown in #log.
const params = new URLSearchParams(location.search);
const base = (params.get("base") || "http://localhost:8000").replace(/\/$/, "");
const key = params.get("key") || "unused";
const models = [params.get("a") || "demo-llama-tiny", params.get("b") || "demo-qwen2-tiny"];
const tts = params.get("tts") || "demo-kokoro-tiny";
const turns = Number(params.get("turns") || 4);
const speakWords = Number(params.get("words") || 6);
const headers = { "Content-Type": "application/json", Authorization: `Bearer ${key}` };

// Mouth shapes (width, height in em) for the 15 Oculus visemes.
const MOUTH = {
  sil: [2, 0.2], PP: [1.6, 0.1], FF: [1.8, 0.3], TH: [1.8, 0.5], DD: [1.8, 0.6],
  kk: [1.8, 0.7], CH: [1.4, 0.7], SS: [2, 0.4], nn: [1.8, 0.5], RR: [1.4, 0.6],
  aa: [2, 1.4], E: [2.2, 0.9], ih: [2, 0.7], oh: [1.4, 1.2], ou: [1, 0.9],
};

window.debate = { done: false, error: null, turns: [] };
const log = (line) => { document.getElementById("log").textContent += line + "\n"; };

async function check(response) {
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(`${response.status}: ${body.error?.message ?? response.statusText}`);
  }
  return response;
}

async function streamReply(model, messages, onText) {
  const response = await check(await fetch(`${base}/v1/chat/completions`, {
    method: "POST", headers,
    body: JSON.stringify({ model, messages, max_tokens: 32, temperature: 0.7, stream: true }),
  }));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", text = "", chunks = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end); buffer = buffer.slice(end + 2);
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") return { text, chunks };
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const piece = chunk.choices?.[0]?.delta?.content ?? "";
      chunks += 1; text += piece; onText(text);
    }
  }
  return { text, chunks };
}

async function speak(voice, input) {
  const response = await check(await fetch(`${base}/v1/audio/speech`, {
    method: "POST", headers,
    body: JSON.stringify({ model: tts, voice, input, response_format: "wav", include_visemes: true }),
  }));
  return response.json();
}

function animate(avatar, speech) {
  // Play the audio and follow the viseme timeline with audio.currentTime;
  // where playback is not allowed (no user gesture), walk the timeline on a clock.
  const mouth = avatar.querySelector(".mouth"), label = avatar.querySelector(".viseme");
  const audio = new Audio(`data:audio/wav;base64,${speech.audio}`);
  const started = performance.now();
  let playing = false;
  audio.play().then(() => { playing = true; }).catch(() => {});
  const shown = [];
  return new Promise((resolve) => {
    const frame = () => {
      const t = playing ? audio.currentTime : (performance.now() - started) / 1000;
      const v = speech.visemes.find((x) => x.start <= t && t < x.end);
      const name = v ? v.viseme : "sil";
      const [w, h] = MOUTH[name] ?? MOUTH.sil;
      mouth.style.width = `${w}em`; mouth.style.height = `${h}em`; label.textContent = name;
      if (shown[shown.length - 1] !== name) shown.push(name);
      if (t >= speech.duration) { label.textContent = "sil"; resolve(shown); }
      else requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  });
}

async function main() {
  const voicesResponse = await check(
    await fetch(`${base}/v1/audio/voices?model=${encodeURIComponent(tts)}`, { headers }));
  const voices = (await voicesResponse.json()).data.map((v) => v.id);
  const personas = [
    { name: "Ada", model: models[0], voice: voices[0], stance: "for the ban" },
    { name: "Bo", model: models[1], voice: voices[Math.min(1, voices.length - 1)], stance: "against the ban" },
  ];
  const transcript = [];
  for (let turn = 0; turn < turns; turn += 1) {
    const me = personas[turn % 2], avatar = document.getElementById(`avatar-${turn % 2}`);
    avatar.querySelector("h3").textContent = `${me.name} (${me.model})`;
    const messages = [{ role: "system", content:
      `You are ${me.name}. Topic: should cities ban cars from their centres? You argue ${me.stance}. Be brief.` }];
    for (const [who, words] of transcript) messages.push({ role: who === me.name ? "assistant" : "user", content: words });
    if (!transcript.length) messages.push({ role: "user", content: "Open the debate." });
    avatar.classList.add("speaking");
    const words = avatar.querySelector(".words");
    const reply = await streamReply(me.model, messages, (text) => { words.textContent = text; });
    transcript.push([me.name, reply.text]);
    const spoken = reply.text.split(/\s+/).filter(Boolean).slice(0, speakWords).join(" ") || "...";
    const speech = await speak(me.voice, spoken);
    const shown = await animate(avatar, speech);
    avatar.classList.remove("speaking");
    window.debate.turns.push({
      speaker: me.name, model: me.model, voice: me.voice, text: reply.text, chunks: reply.chunks,
      spoken, duration: speech.duration, sampleRate: speech.sample_rate,
      visemes: speech.visemes.length, lastVisemeEnd: speech.visemes.at(-1)?.end ?? 0,
      shown,
    });
    log(`${me.name}: ${reply.text}\n  -> ${speech.duration.toFixed(2)}s of speech, ${speech.visemes.length} visemes`);
  }
}

main().then(
  () => { window.debate.done = true; log("done"); },
  (err) => { window.debate.error = String(err); window.debate.done = true; log(`error: ${err}`); },
);

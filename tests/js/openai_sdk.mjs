// The official OpenAI JS SDK against a running gateway: lists the models,
// streams a chat completion (with usage), makes a non-streamed one, and
// checks that an unknown model is a NotFoundError. Prints one JSON line with
// what it saw, for tests/e2e/test_js_clients.py to check.
//
//   node tests/js/openai_sdk.mjs <base-url> <model>
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const messages = [{ role: "user", content: "hi" }];

const models = [];
for await (const m of client.models.list()) models.push(m.id);

const stream = await client.chat.completions.create({
  model,
  messages,
  max_tokens: 12,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let chunks = 0;
let usage = null;
for await (const chunk of stream) {
  chunks += 1;
  if (chunk.choices.length) streamed += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}

const whole = await client.chat.completions.create({
  model,
  messages,
  max_tokens: 12,
  temperature: 0,
});

let notFound = null;
try {
  await client.chat.completions.create({ model: "no-such-model", messages });
} catch (err) {
  notFound = { status: err.status, name: err.constructor.name, code: err.code };
}

console.log(
  JSON.stringify({
    models,
    streamed,
    chunks,
    usage,
    text: whole.choices[0].message.content,
    finish_reason: whole.choices[0].finish_reason,
    notFound,
  }),
);

// The official OpenAI JS SDK's Responses API against a running gateway:
// responses.create, responses.stream (its events and final response),
// retrieve, input items, delete, and an unknown previous_response_id as the
// SDK's BadRequestError. Prints one JSON line with what it saw, for
// tests/e2e/test_responses.py to check.
//
//   node tests/js/openai_responses.mjs <base-url> <model>
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const request = {
  model,
  instructions: "You are terse.",
  input: "Name a colour.",
  max_output_tokens: 12,
  temperature: 0,
};

const whole = await client.responses.create(request);

const stream = client.responses.stream(request);
const types = [];
let streamed = "";
for await (const event of stream) {
  types.push(event.type);
  if (event.type === "response.output_text.delta") streamed += event.delta;
}
const final = await stream.finalResponse();

const retrieved = await client.responses.retrieve(whole.id);
const items = [];
for await (const item of client.responses.inputItems.list(whole.id)) items.push(item.type);
const deleted = await client.responses.delete(whole.id).then(() => true);

let badRequest = null;
try {
  await client.responses.create({ ...request, previous_response_id: "resp_unknown" });
} catch (err) {
  badRequest = { status: err.status, name: err.constructor.name, param: err.param };
}

console.log(
  JSON.stringify({
    text: whole.output_text,
    status: whole.status,
    usage: whole.usage,
    streamed,
    finalText: final.output_text,
    types,
    retrieved: retrieved.id === whole.id,
    items,
    deleted,
    badRequest,
  }),
);

// The official OpenAI JS SDK's Responses API against a running gateway:
// responses.create (whole), responses.stream (events and the final
// response), retrieve, input items, delete, and a forced function call.
// Prints one JSON line with what it saw, for tests/e2e/test_agents.py.
//
//   node tests/js/openai_responses.mjs <base-url> <model>
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const request = { model, input: "hi", max_output_tokens: 12, temperature: 0 };

const whole = await client.responses.create(request);

const events = [];
let streamed = "";
const stream = client.responses.stream(request);
stream.on("event", (event) => events.push(event.type));
stream.on("response.output_text.delta", (event) => (streamed += event.delta));
const final = await stream.finalResponse();

const retrieved = await client.responses.retrieve(whole.id);
const inputItems = [];
for await (const item of client.responses.inputItems.list(whole.id)) inputItems.push(item);
const deleted = await client.responses.delete(whole.id);
let afterDelete = null;
try {
  await client.responses.retrieve(whole.id);
} catch (err) {
  afterDelete = { status: err.status, name: err.constructor.name };
}

const weather = {
  type: "function",
  name: "get_weather",
  description: "The weather in a city.",
  parameters: {
    type: "object",
    // An enum, so that the random model's constrained call ends.
    properties: { city: { type: "string", enum: ["Paris", "Rome"] } },
    required: ["city"],
    additionalProperties: false,
  },
  strict: true,
};
const called = await client.responses.create({
  model,
  input: "Weather in Paris?",
  tools: [weather],
  tool_choice: "required",
  temperature: 0,
});
const call = called.output.find((item) => item.type === "function_call");

console.log(
  JSON.stringify({
    whole: { id: whole.id, status: whole.status, text: whole.output_text, usage: whole.usage },
    streamed,
    events,
    final: { id: final.id, status: final.status, text: final.output_text },
    retrieved: { id: retrieved.id, text: retrieved.output_text },
    inputItems,
    deleted,
    afterDelete,
    call: call && { name: call.name, arguments: JSON.parse(call.arguments), call_id: call.call_id },
  }),
);

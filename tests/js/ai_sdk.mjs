// The Vercel AI SDK (ai + @ai-sdk/openai, whose default model calls
// /v1/responses) against a running gateway: generateText, streamText, a
// conversation that goes on from the first answer, and a tool the model is
// made to call, whose result goes back for the next step. Prints one JSON line
// with what it saw, for tests/e2e/test_agents.py.
//
//   node tests/js/ai_sdk.mjs <base-url> <model>
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, model] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey: "unused" });
const settings = { model: openai(model), maxOutputTokens: 12, temperature: 0, maxRetries: 0 };

const generated = await generateText({ ...settings, system: "Be brief.", prompt: "hi" });

const stream = streamText({ ...settings, system: "Be brief.", prompt: "hi" });
let streamed = "";
for await (const delta of stream.textStream) streamed += delta;

// The SDK sends the first answer back as an item_reference to the stored response.
const followUp = await generateText({
  ...settings,
  messages: [
    { role: "user", content: "hi" },
    ...generated.response.messages,
    { role: "user", content: "and then?" },
  ],
});

const calls = [];
const tools = {
  get_weather: tool({
    description: "The weather in a city.",
    // An enum, so that the random model's constrained call ends.
    inputSchema: z.object({ city: z.enum(["Paris", "Rome"]) }),
    execute: async ({ city }) => {
      calls.push(city);
      return `Sunny in ${city}`;
    },
  }),
};
// The first step must call the tool; the second answers with its result.
const toolSteps = {
  maxOutputTokens: 48, // a whole call: cut short, it would be text
  tools,
  stopWhen: stepCountIs(2),
  prepareStep: ({ stepNumber }) =>
    stepNumber === 0 ? { toolChoice: { type: "tool", toolName: "get_weather" } } : { toolChoice: "none" },
};
const withTool = await generateText({ ...settings, prompt: "Weather in Paris?", ...toolSteps });

const streamedTool = streamText({ ...settings, prompt: "Weather in Paris?", ...toolSteps });
const parts = [];
for await (const part of streamedTool.fullStream) parts.push(part.type);
const streamedSteps = await streamedTool.steps;

const summary = (steps) =>
  steps.map((step) => ({
    finishReason: step.finishReason,
    toolCalls: step.toolCalls.map((c) => ({ name: c.toolName, input: c.input })),
    toolResults: step.toolResults.map((r) => r.output),
    text: step.text,
  }));

console.log(
  JSON.stringify({
    generated: {
      text: generated.text,
      finishReason: generated.finishReason,
      usage: generated.usage,
      responseId: generated.response.id,
    },
    streamed,
    streamedFinishReason: await stream.finishReason,
    followUp: { text: followUp.text, finishReason: followUp.finishReason },
    calls,
    toolSteps: summary(withTool.steps),
    streamedParts: [...new Set(parts)],
    streamedToolSteps: summary(streamedSteps),
  }),
);

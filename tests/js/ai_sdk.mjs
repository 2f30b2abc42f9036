// The Vercel AI SDK (ai + @ai-sdk/openai, whose default model calls
// /v1/responses) against a running gateway. Prints one JSON line with what it
// saw, for tests/e2e/test_agents.py. One of:
//   text:         generateText, then streamText of the same prompt
//   conversation: a second turn going on from the first answer
//   tools:        a tool the model is made to call, whose result goes back
//                 for the next step (generateText, then streamText)
//
//   node tests/js/ai_sdk.mjs <base-url> <model> <text|conversation|tools>
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, model, scenario] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey: "unused" });
const settings = { model: openai(model), maxOutputTokens: 12, temperature: 0, maxRetries: 0 };

async function text() {
  const generated = await generateText({ ...settings, system: "Be brief.", prompt: "hi" });
  const stream = streamText({ ...settings, system: "Be brief.", prompt: "hi" });
  let streamed = "";
  for await (const delta of stream.textStream) streamed += delta;
  return {
    text: generated.text,
    finishReason: generated.finishReason,
    usage: generated.usage,
    responseId: generated.response.id,
    streamed,
    streamedFinishReason: await stream.finishReason,
  };
}

async function conversation() {
  const first = await generateText({ ...settings, prompt: "hi" });
  // The SDK sends the first answer back as an item_reference to the stored response.
  const second = await generateText({
    ...settings,
    messages: [
      { role: "user", content: "hi" },
      ...first.response.messages,
      { role: "user", content: "and then?" },
    ],
  });
  return { first: first.finishReason, second: second.finishReason, text: second.text };
}

async function tools() {
  const calls = [];
  const get_weather = tool({
    description: "The weather in a city.",
    // An enum, so that the random model's constrained call ends.
    inputSchema: z.object({ city: z.enum(["Paris", "Rome"]) }),
    execute: async ({ city }) => {
      calls.push(city);
      return `Sunny in ${city}`;
    },
  });
  // The first step must call the tool; the second answers with its result.
  const steps = {
    ...settings,
    maxOutputTokens: 48, // a whole call: cut short, it would be text
    prompt: "Weather in Paris?",
    tools: { get_weather },
    stopWhen: stepCountIs(2),
    prepareStep: ({ stepNumber }) =>
      stepNumber === 0
        ? { toolChoice: { type: "tool", toolName: "get_weather" } }
        : { toolChoice: "none" },
  };
  const generated = await generateText(steps);
  const streamed = streamText(steps);
  const parts = new Set();
  for await (const part of streamed.fullStream) parts.add(part.type);
  const summary = (all) =>
    all.map((step) => ({
      finishReason: step.finishReason,
      toolCalls: step.toolCalls.map((c) => ({ name: c.toolName, input: c.input })),
      toolResults: step.toolResults.map((r) => r.output),
    }));
  return {
    calls,
    generated: summary(generated.steps),
    streamed: summary(await streamed.steps),
    streamedParts: [...parts],
  };
}

const scenarios = { text, conversation, tools };
console.log(JSON.stringify(await scenarios[scenario]()));

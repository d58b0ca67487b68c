// The AI SDK's own clients against a real daphne of the project: `DefaultChatTransport`
// with `readUIMessageStream`, and `Chat` from @ai-sdk/react (the state machine behind
// `useChat`, usable without rendering), on /api/chat.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Chat } from "@ai-sdk/react";
import {
  DefaultChatTransport,
  parseJsonEventStream,
  readUIMessageStream,
  uiMessageChunkSchema,
} from "ai";

import {
  fake,
  providerReasoning,
  providerText,
  startRelay,
  unavailable,
} from "./relay-server.js";

const skip = unavailable() ?? false;
const TIMEOUT = 20_000;
let relay;

before(async () => {
  if (!skip) relay = await startRelay();
}, { timeout: 120_000 }); // several Python processes start, on a busy machine

after(() => relay?.stop());

const serverTest = (name, fn) => test(name, { skip, timeout: TIMEOUT }, fn);

let chats = 0;
const newChatId = () => `chat-${process.pid}-${++chats}`;

function transport(options = {}) {
  return new DefaultChatTransport({
    api: `${relay.url}/api/chat`,
    headers: { Authorization: `Bearer ${options.token ?? relay.token}` },
    ...options,
  });
}

const userMessage = (text) => ({
  id: `u-${Math.random().toString(36).slice(2)}`,
  role: "user",
  parts: [{ type: "text", text }],
});

const textOf = (message) =>
  message.parts.filter((part) => part.type === "text").map((part) => part.text).join("");

// A message's parts as [type, text, state]: their order and content, nothing else.
const partsOf = (message) => message.parts.map((part) => [part.type, part.text, part.state]);

// What the relay makes of a provider's text: CRLF and CR become LF.
const normalised = (text) => text.replace(/\r\n?/g, "\n");

// The row of stream `streamId` once it has finished (it says `streaming` a moment
// longer than its viewers see the stream run).
function storedStream(streamId) {
  const script = [
    "import json, time",
    "from streaming.models import StreamLog",
    "for _ in range(100):",
    `    row = StreamLog.objects.get(pk=${Number(streamId)})`,
    "    if row.status != StreamLog.Status.STREAMING: break",
    "    time.sleep(0.1)",
    "fields = ('status', 'response', 'reasoning', 'reasoning_spans', 'output_tokens',",
    "          'reasoning_tokens')",
    "print(json.dumps({name: getattr(row, name) for name in fields}))",
  ].join("\n");
  return JSON.parse(relay.manage("shell", "-c", script).trim().split("\n").at(-1));
}

// A fetch whose first POST response breaks after `bytes` bytes of its body, as a
// dropped connection does (a TypeError, which the SDK treats as a disconnect).
function droppingFetch(bytes) {
  let dropped = false;
  const calls = [];
  const dropping = async (url, init) => {
    calls.push(init?.method ?? "GET");
    const response = await fetch(url, init);
    if (dropped || init?.method !== "POST") return response;
    dropped = true;
    const reader = response.body.getReader();
    let passed = 0;
    const body = new ReadableStream({
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) return controller.close();
        if (passed + value.length >= bytes) {
          controller.enqueue(value.slice(0, bytes - passed));
          await reader.cancel(); // the server sees the client go away
          controller.error(new TypeError("network error"));
          return;
        }
        passed += value.length;
        controller.enqueue(value);
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  return { fetch: dropping, calls };
}

async function waitUntil(condition, what) {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

serverTest("DefaultChatTransport and readUIMessageStream get the exact text", async () => {
  const options = "tokens=40&pattern=tricky";
  const chunks = await transport().sendMessages({
    trigger: "submit-message",
    chatId: newChatId(),
    messageId: undefined,
    messages: [userMessage("Hello " + fake(options))],
    abortSignal: AbortSignal.timeout(TIMEOUT),
  });
  let message;
  for await (message of readUIMessageStream({ stream: chunks, terminateOnError: true })) {
    // each iteration is the message so far
  }
  const expected = providerText(options).replace(/\r\n?/g, "\n");
  assert.equal(textOf(message), expected);
  assert.match(message.id, /^msg-\d+$/);
  const { metadata } = message;
  assert.equal(message.id, `msg-${metadata.stream_id}`);
  assert.equal(metadata.provider, "openai");
  assert.equal(metadata.status, "completed");
  assert.ok(metadata.usage.output_tokens > 0, JSON.stringify(metadata));
});

serverTest("Chat sends, then regenerates the last answer", async () => {
  const chat = new Chat({ id: newChatId(), transport: transport() });
  await chat.sendMessage({ text: "First " + fake("tokens=8") });
  assert.equal(chat.status, "ready");
  assert.equal(chat.error, undefined);
  assert.deepEqual(chat.messages.map((m) => m.role), ["user", "assistant"]);
  const first = chat.messages[1];
  assert.equal(textOf(first), providerText("tokens=8"));

  await chat.regenerate();
  assert.equal(chat.status, "ready");
  assert.equal(chat.error, undefined);
  assert.deepEqual(chat.messages.map((m) => m.role), ["user", "assistant"]);
  const second = chat.messages[1];
  assert.notEqual(second.id, first.id); // a new stream
  assert.equal(textOf(second), providerText("tokens=8"));
  assert.equal(second.metadata.status, "completed");

  // The next turn goes on in the same conversation.
  await chat.sendMessage({ text: "Second " + fake("tokens=3") });
  assert.deepEqual(chat.messages.map((m) => m.role), ["user", "assistant", "user", "assistant"]);
  assert.equal(textOf(chat.messages[3]), providerText("tokens=3"));
});

serverTest("Chat resumes after a dropped connection with no gap and no repeat", async () => {
  const options = "tokens=60&delay_ms=40";
  const dropping = droppingFetch(1200);
  const chat = new Chat({ id: newChatId(), transport: transport({ fetch: dropping.fetch }) });

  await chat.sendMessage({ text: "Long " + fake(options) });
  assert.equal(chat.status, "error"); // the connection dropped mid-answer
  assert.equal(chat.error.name, "TypeError");
  const partial = textOf(chat.messages.at(-1));
  const expected = providerText(options);
  assert.ok(partial.length > 0 && partial.length < expected.length, partial);
  assert.ok(expected.startsWith(partial));

  await chat.resumeStream();
  assert.equal(chat.status, "ready");
  assert.equal(chat.error, undefined);
  assert.deepEqual(chat.messages.map((m) => m.role), ["user", "assistant"]);
  const answer = chat.messages[1];
  assert.equal(answer.parts.filter((p) => p.type === "text").length, 1);
  assert.equal(textOf(answer), expected);
  assert.equal(answer.metadata.status, "completed");
  assert.deepEqual(dropping.calls, ["POST", "GET"]);

  // After the end there is nothing to resume.
  assert.equal(await transport().reconnectToStream({ chatId: chat.id }), null);
});

// Each wire format of reasoning the fake speaks: OpenAI's two delta keys and
// Anthropic's thinking block.
const REASONING_WIRES = [
  { provider: "openai", wire: "reasoning_content", extra: "" },
  { provider: "openai", wire: "reasoning", extra: "&reasoning_field=reasoning" },
  { provider: "anthropic", wire: "thinking", extra: "" },
];

for (const { provider, wire, extra } of REASONING_WIRES) {
  const from = `${provider} (${wire})`;

  serverTest(`readUIMessageStream gets the exact reasoning of ${from}, then the answer`, async () => {
    // The output counts the reasoning, as real providers count it.
    const options = "reasoning=5&tokens=6&reasoning_tokens=5" + extra;
    const chunks = await transport({ body: { provider } }).sendMessages({
      trigger: "submit-message",
      chatId: newChatId(),
      messageId: undefined,
      messages: [userMessage("Think " + fake(options))],
      abortSignal: AbortSignal.timeout(TIMEOUT),
    });
    let message;
    const firstText = [];
    for await (message of readUIMessageStream({ stream: chunks, terminateOnError: true })) {
      // The reasoning is closed before the text starts, not at the end.
      if (firstText.length === 0 && message.parts.some((p) => p.type === "text")) {
        firstText.push(...partsOf(message));
      }
    }
    const reasoning = normalised(providerReasoning(options));
    const answer = normalised(providerText(options));
    assert.deepEqual(firstText, [
      ["step-start", undefined, undefined],
      ["reasoning", reasoning, "done"],
      ["text", "", "streaming"],
    ]);
    assert.deepEqual(partsOf(message), [
      ["step-start", undefined, undefined],
      ["reasoning", reasoning, "done"],
      ["text", answer, "done"],
    ]);
    const { metadata } = message;
    assert.equal(metadata.provider, provider);
    assert.equal(metadata.status, "completed");
    assert.equal(metadata.usage.output_tokens, 11);
    assert.equal(metadata.usage.reasoning_tokens, 5);

    assert.deepEqual(storedStream(metadata.stream_id), {
      status: "completed",
      response: answer,
      reasoning,
      // All of the reasoning came before the answer's first character; the length
      // is Python's, in code points.
      reasoning_spans: [[0, [...reasoning].length]],
      output_tokens: 11,
      reasoning_tokens: 5,
    });
  });

  serverTest(`Chat resumes mid-reasoning of ${from} with no gap and no repeat`, async () => {
    const options = "reasoning=40&tokens=20&delay_ms=40" + extra;
    // The opening parts take about 200 bytes and each reasoning part about 90, so
    // the cut falls in the reasoning, at about its 11th token of 40.
    const dropping = droppingFetch(1200);
    const chat = new Chat({
      id: newChatId(),
      transport: transport({ fetch: dropping.fetch, body: { provider } }),
    });
    const reasoning = normalised(providerReasoning(options));
    const answer = normalised(providerText(options));

    await chat.sendMessage({ text: "Ponder " + fake(options) });
    assert.equal(chat.status, "error"); // the connection dropped mid-reasoning
    assert.equal(chat.error.name, "TypeError");
    const partial = chat.messages.at(-1);
    assert.deepEqual(partial.parts.map((p) => [p.type, p.state]), [
      ["step-start", undefined],
      ["reasoning", "streaming"],
    ]);
    const thought = partial.parts[1].text;
    assert.ok(thought.length > 0 && thought.length < reasoning.length, thought);
    assert.ok(reasoning.startsWith(thought), thought);

    await chat.resumeStream();
    assert.equal(chat.status, "ready");
    assert.equal(chat.error, undefined);
    assert.deepEqual(chat.messages.map((m) => m.role), ["user", "assistant"]);
    const message = chat.messages[1];
    assert.equal(message.id, partial.id);
    assert.deepEqual(partsOf(message), [
      ["step-start", undefined, undefined],
      ["reasoning", reasoning, "done"],
      ["text", answer, "done"],
    ]);
    assert.equal(message.metadata.status, "completed");
    assert.deepEqual(dropping.calls, ["POST", "GET"]);
  });
}

serverTest("reconnectToStream gets null for a chat with nothing in flight", async () => {
  assert.equal(await transport().reconnectToStream({ chatId: newChatId() }), null);
});

serverTest("Stop ends the answer and keeps what was said", async () => {
  const chatId = newChatId();
  const chat = new Chat({ id: chatId, transport: transport() });
  const options = "tokens=400&delay_ms=20";
  const sending = chat.sendMessage({ text: "Endless " + fake(options) });
  await waitUntil(() => textOf(chat.messages.at(-1) ?? { parts: [] }).length > 0, "text");

  const response = await fetch(`${relay.url}/api/chat/${chatId}/stop`, {
    method: "POST",
    headers: { Authorization: `Bearer ${relay.token}` },
  });
  assert.equal(response.status, 202);
  assert.equal((await response.json()).status, "stopping");
  await sending;

  assert.equal(chat.status, "ready");
  assert.equal(chat.error, undefined);
  const answer = chat.messages[1];
  assert.equal(answer.metadata.status, "cancelled");
  assert.equal(answer.metadata.error.code, "stopped");
  const text = textOf(answer);
  assert.ok(text.length > 0 && text.length < providerText(options).length);
  assert.equal(await transport().reconnectToStream({ chatId }), null);
});

serverTest("a provider failure arrives as chat.error, with our message", async () => {
  const chat = new Chat({ id: newChatId(), transport: transport() });
  await chat.sendMessage({ text: "Fail " + fake("tokens=20&error_after=3") });
  assert.equal(chat.status, "error");
  const answer = chat.messages[1];
  assert.equal(textOf(answer), providerText("tokens=3")); // the text before it stays
  // The error part's text: our message for the user, no SDK text, URL or key.
  assert.equal(chat.error.message, "The model provider is unavailable; try again shortly.");
});

serverTest("the demo provider answers when the body asks for it", async () => {
  const chat = new Chat({
    id: newChatId(),
    transport: transport({ body: { provider: "demo", model: "demo" } }),
  });
  await chat.sendMessage({ text: "Hello, demo" });
  assert.equal(chat.status, "ready");
  assert.equal(chat.messages[1].metadata.provider, "demo");
  assert.match(textOf(chat.messages[1]), /> Hello, demo\n/);
});

serverTest("a refused request is an APICallError carrying our JSON error", async () => {
  const chat = new Chat({
    id: newChatId(),
    transport: transport({ body: { provider: "nope" } }),
  });
  await chat.sendMessage({ text: "Hello" });
  assert.equal(chat.status, "error");
  assert.equal(chat.error.statusCode, 400);
  const body = JSON.parse(chat.error.message);
  assert.equal(body.error, "bad_request");
  assert.ok("provider" in body.fields, chat.error.message);
});

serverTest("a limit's 429 is an APICallError with the limit's message", async () => {
  const token = relay.manage(
    "shell",
    "-c",
    [
      "from django.contrib.auth.models import User",
      "from streaming.models import ApiToken, UsageLimit",
      "user = User.objects.create_user('limited')",
      "UsageLimit.objects.create(user=user, starts_per_minute=1)",
      "token = ApiToken(user=user, name='js')",
      "print(token.generate()); token.save()",
    ].join("\n"),
  ).trim().split("\n").at(-1);
  const chat = new Chat({ id: newChatId(), transport: transport({ token }) });
  await chat.sendMessage({ text: "One " + fake("tokens=2") });
  assert.equal(chat.status, "ready");
  await chat.sendMessage({ text: "Two " + fake("tokens=2") });
  assert.equal(chat.status, "error");
  assert.equal(chat.error.statusCode, 429);
  const body = JSON.parse(chat.error.message);
  assert.equal(body.error, "rate_limited");
  assert.ok(body.retry_after > 0);
});

// What the dialect writes for reasoning and for each ending, read by the SDK's own
// parser against its schema: every part must be one this `ai` knows.
const DIALECT_SCRIPT = `
import json
from streaming.api.ui_message_stream import UIMessageStream
from streaming.errors import StreamError
from streaming.relay.feed import Ending
meta = {"stream_id": 9, "provider": "demo", "model": "demo"}
endings = {
    "completed": Ending("completed", usage={"input_tokens": 1, "output_tokens": 2}),
    "error": Ending("error", error=StreamError.of("unavailable", "Try again.")),
    "stopped": Ending("cancelled", error=StreamError.of("stopped", "Stopped.")),
}
out = {}
for name, ending in endings.items():
    d = UIMessageStream()
    out[name] = (d.opening(meta) + d.reasoning("Think", 5) + d.heartbeat()
                 + d.reasoning(" more.", 11) + d.text("Yes", 3) + d.closing(ending))
print(json.dumps(out))
`;

serverTest("the SDK's schema accepts every part of reasoning and of each ending", async () => {
  const written = JSON.parse(relay.manage("shell", "-c", DIALECT_SCRIPT).trim().split("\n").at(-1));
  for (const [ending, frames] of Object.entries(written)) {
    const results = parseJsonEventStream({
      stream: new Response(frames).body,
      schema: uiMessageChunkSchema,
    });
    const chunks = [];
    for await (const result of results) {
      assert.ok(result.success, `${ending}: ${result.error}`);
      chunks.push(result.value);
    }
    let message;
    const stream = new ReadableStream({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(chunk);
        controller.close();
      },
    });
    const errors = [];
    for await (message of readUIMessageStream({ stream, onError: (e) => errors.push(e) })) {
      // the message so far
    }
    const reasoning = message.parts.filter((p) => p.type === "reasoning");
    assert.deepEqual(reasoning.map((p) => [p.text, p.state]), [["Think more.", "done"]]);
    assert.equal(textOf(message), "Yes");
    assert.equal(message.id, "msg-9");
    assert.equal(message.metadata.status, ending === "stopped" ? "cancelled" : ending);
    assert.deepEqual(errors.map((e) => e.message), ending === "error" ? ["Try again."] : []);
  }
});

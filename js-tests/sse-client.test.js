import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { openStream } from "../static/streaming/sse-client.js";
import { settle, setup } from "./fakes.js";

const EVENTS = "/streams/7/events";
const CHAT = "/chat/stream?prompt=hello%20there";

const param = (url, name) => new URLSearchParams(url.split("?")[1] ?? "").get(name);

describe("frames", () => {
  test("tokens accumulate in order, multi-line text included", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.open();
    t.last.meta();
    t.last.token("Hello", 5);
    t.last.token(",\nworld\n", 13);
    t.last.token("\n- item", 20);
    assert.equal(stream.content, "Hello,\nworld\n\n- item");
    assert.equal(stream.lastEventId, "20");
    assert.deepEqual(t.named("token"), [
      ["Hello", { offset: 5, content: "Hello" }],
      [",\nworld\n", { offset: 13, content: "Hello,\nworld\n" }],
      ["\n- item", { offset: 20, content: "Hello,\nworld\n\n- item" }],
    ]);
    assert.equal(stream.status, "streaming");
  });

  test("meta sets streamId", () => {
    const t = setup();
    const stream = openStream(CHAT, t.options);
    assert.equal(stream.streamId, null);
    assert.equal(stream.status, "connecting");
    t.last.meta(42);
    assert.equal(stream.streamId, 42);
    assert.deepEqual(t.named("meta"), [[{ stream_id: 42, provider: "demo", model: "demo" }]]);
    assert.equal(stream.status, "streaming");
  });

  test("done closes the EventSource and nothing reconnects, even on a 204", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.meta();
    t.last.token("All of it.", 10);
    t.last.done({ input_tokens: 3, output_tokens: 4 });
    assert.equal(stream.status, "done");
    assert.equal(t.last.closed, true);
    assert.deepEqual(t.named("usage"), [[{ input_tokens: 3, output_tokens: 4 }]]);
    assert.equal(t.named("done").length, 1);

    // What a browser does next: the server closes, EventSource fires error; a later
    // reconnect would get 204 and fire error with readyState CLOSED.
    t.last.fail();
    t.last.fail(2);
    assert.equal(t.instances.length, 1);
    assert.equal(t.timers.pending.size, 0);
    assert.equal(stream.status, "done");
    assert.equal(stream.error, null);
    assert.deepEqual(t.named("error"), []);
    assert.deepEqual(t.named("status").flat(), ["streaming", "done"]);
  });

  test("an error frame closes the stream with the parsed error", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.meta();
    t.last.token("Part", 4);
    const frame = { code: "rate_limited", message: "Slow down.", retryable: true, retry_after: 12 };
    t.last.errorFrame(frame);
    assert.equal(stream.status, "error");
    assert.deepEqual(stream.error, frame);
    assert.deepEqual(t.named("error"), [[frame]]);
    assert.equal(t.last.closed, true);
    assert.equal(stream.content, "Part");
    t.last.fail();
    assert.equal(t.instances.length, 1);
    assert.equal(t.timers.pending.size, 0);
  });

  test("offsets count code points, as the server does", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.token("héllo 👋", 7); // 7 code points, 8 UTF-16 units
    t.last.token("👋 bye", 11); // starts at 6: repeats the emoji
    assert.equal(stream.content, "héllo 👋 bye");
  });
});

describe("reconnecting", () => {
  test("a dropped connection reconnects with last_event_id after a jittered backoff", () => {
    const t = setup({ options: { random: () => 0.25 } });
    const stream = openStream(EVENTS, t.options);
    const first = t.last;
    first.open();
    first.meta();
    first.token("Hello", 5);
    first.token(" wor", 9);
    first.fail();

    assert.equal(first.closed, true, "the client closes the native EventSource itself");
    assert.equal(stream.status, "reconnecting");
    assert.deepEqual(t.timers.delays, [0.25 * 500]); // random() * min(15000, 500 * 2**0)
    assert.equal(t.instances.length, 1, "nothing reconnects before the delay");
    t.timers.runNext();
    assert.equal(t.instances.length, 2);
    assert.equal(t.last.url, "/streams/7/events?last_event_id=9");

    // A second failure without a frame doubles the window.
    t.last.fail();
    assert.deepEqual(t.timers.delays, [125, 0.25 * 1000]);
    t.timers.runNext();
    assert.equal(t.last.url, "/streams/7/events?last_event_id=9");

    // The replay overlaps what we have, or repeats it: only the new part is kept.
    t.last.open();
    t.last.meta();
    t.last.token("wor", 9); // a full duplicate
    t.last.token(" world", 11); // " wor" is old, "ld" is new
    t.last.token("!", 12);
    assert.equal(stream.content, "Hello world!");
    assert.deepEqual(
      t.named("token").map(([text]) => text),
      ["Hello", " wor", "ld", "!"],
    );
    assert.equal(stream.status, "streaming");

    // A frame arrived, so the attempt count started again.
    t.last.fail();
    assert.equal(t.timers.delays.at(-1), 125);
    t.timers.runNext();
    assert.equal(t.last.url, "/streams/7/events?last_event_id=12");
  });

  test("an existing last_event_id is replaced, and the content starts after it", () => {
    const t = setup();
    const stream = openStream("/streams/7/events?last_event_id=3&x=1", t.options);
    t.last.token("lo", 5);
    assert.equal(stream.content, "lo");
    assert.equal(stream.streamId, 7);
    t.last.fail();
    t.timers.runNext();
    assert.equal(t.last.url, "/streams/7/events?last_event_id=5&x=1");
  });

  test("/chat/stream resumes with last_event_id=<stream>:<offset>", () => {
    const t = setup();
    const stream = openStream(CHAT, t.options);
    t.last.meta(7);
    t.last.token("Hi", "7:2");
    t.last.fail();
    t.timers.runNext();
    assert.equal(param(t.last.url, "last_event_id"), "7:2");
    assert.equal(param(t.last.url, "prompt"), "hello there");
    t.last.token("Hi there", "7:8");
    assert.equal(stream.content, "Hi there");
    assert.equal(stream.lastEventId, "7:8");
  });

  test("/chat/stream after the meta frame only resumes at <stream>:0", () => {
    const t = setup();
    openStream(CHAT, t.options);
    t.last.meta(7);
    t.last.fail();
    t.timers.runNext();
    assert.equal(param(t.last.url, "last_event_id"), "7:0");
  });

  test("/chat/stream never reconnects without an id", () => {
    const t = setup();
    const stream = openStream(CHAT, t.options);
    t.last.fail();
    assert.equal(t.instances.length, 1);
    assert.equal(t.timers.pending.size, 0);
    assert.equal(stream.status, "error");
    assert.equal(stream.error.code, "connection_lost");
    assert.equal(stream.error.retryable, true);
  });

  test("/chat/stream with allowRestart reconnects to the plain URL while nothing arrived", () => {
    const t = setup({ options: { allowRestart: true } });
    openStream(CHAT, t.options);
    t.last.fail();
    t.timers.runNext();
    assert.equal(t.last.url, CHAT);
    t.last.meta(9);
    t.last.fail();
    t.timers.runNext();
    assert.equal(param(t.last.url, "last_event_id"), "9:0");
  });

  test("gives up after maxAttempts reconnections without a frame", () => {
    const backoff = { initialMs: 100, maxMs: 250, maxAttempts: 3 };
    const t = setup({ options: { backoff, random: () => 1 } });
    const stream = openStream(EVENTS, t.options);
    t.last.token("abc", 3);
    for (let attempt = 0; attempt < 3; attempt += 1) {
      t.last.fail();
      t.timers.runNext();
    }
    assert.deepEqual(t.timers.delays, [100, 200, 250]); // capped at maxMs
    assert.equal(t.instances.length, 4);
    t.last.fail();
    assert.equal(t.instances.length, 4);
    assert.equal(t.timers.pending.size, 0);
    assert.equal(stream.status, "error");
    assert.deepEqual(t.named("error"), [
      [{ code: "connection_lost", message: "The connection was lost and could not be restored.", retryable: true }],
    ]);
    assert.equal(stream.content, "abc");
  });

  test("a refused first connection (401, 404, 429…) ends the stream without retrying", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.fail(2);
    assert.equal(t.instances.length, 1);
    assert.equal(stream.status, "error");
    assert.equal(stream.error.code, "refused");
    assert.equal(stream.error.retryable, false);
  });

  test("a 204 on resume (ending lost with the connection) recovers the ending", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.token("The end", 7);
    t.last.fail(); // dropped before the done frame
    t.timers.runNext();
    assert.equal(param(t.last.url, "last_event_id"), "7");
    t.last.fail(2); // 204: nothing after 7
    t.timers.runNext();
    assert.equal(param(t.last.url, "last_event_id"), "6");
    t.last.meta();
    t.last.token("d", 7);
    t.last.done();
    assert.equal(stream.status, "done");
    assert.equal(stream.content, "The end");
  });

  test("refused again after that one extra try: the stream ends", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.token("Some", 4);
    t.last.fail();
    t.timers.runNext();
    t.last.fail(2);
    t.timers.runNext();
    t.last.fail(2); // e.g. 401: the session expired
    assert.equal(t.instances.length, 3);
    assert.equal(stream.status, "error");
    assert.equal(stream.error.code, "refused");
  });

  test("close() stops following: no reconnect, no more callbacks", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.token("a", 1);
    t.last.fail();
    assert.equal(t.timers.pending.size, 1);
    stream.close();
    assert.equal(t.timers.pending.size, 0);
    assert.equal(stream.status, "closed");
    const before = t.calls.length;
    t.instances[0].token("ab", 2); // a stale EventSource is ignored
    assert.equal(t.calls.length, before);
    assert.equal(stream.content, "a");
  });
});

describe("reasoning", () => {
  test("reasoning then tokens: each kind grows apart, lastEventId follows the last frame", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.open();
    t.last.meta();
    t.last.reasoning("Think,\nthen", "r11");
    assert.equal(stream.lastEventId, "r11");
    t.last.reasoning(" answer.", "r19");
    t.last.token("Yes", 3);
    t.last.token(".", 4);
    assert.equal(stream.reasoning, "Think,\nthen answer.");
    assert.equal(stream.content, "Yes.");
    assert.equal(stream.lastEventId, "4");
    assert.deepEqual(t.named("reasoning"), [
      ["Think,\nthen", { offset: 11, reasoning: "Think,\nthen" }],
      [" answer.", { offset: 19, reasoning: "Think,\nthen answer." }],
    ]);
    assert.deepEqual(t.named("token"), [
      ["Yes", { offset: 3, content: "Yes" }],
      [".", { offset: 4, content: "Yes." }],
    ]);
  });

  test("interleaved reasoning and tokens keep their own offsets", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.reasoning("Hmm", "r3");
    t.last.token("A", 1);
    t.last.reasoning(", so", "r7");
    t.last.token("BC", 3);
    assert.equal(stream.reasoning, "Hmm, so");
    assert.equal(stream.content, "ABC");
    assert.equal(stream.lastEventId, "3");
    assert.deepEqual(
      t.calls.filter(([name]) => name === "token" || name === "reasoning").map(([name, text]) => [name, text]),
      [["reasoning", "Hmm"], ["token", "A"], ["reasoning", ", so"], ["token", "BC"]],
    );
  });

  test("streams without reasoning have empty reasoning and never call onReasoning", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.token("Hi", 2);
    t.last.done();
    assert.equal(stream.reasoning, "");
    assert.deepEqual(t.named("reasoning"), []);
  });

  test("a drop mid-reasoning resumes with last_event_id=r<N>, and the replayed overlap is trimmed", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.reasoning("Let me 🤔", "r8"); // 8 code points, 9 UTF-16 units
    t.last.fail();
    t.timers.runNext();
    assert.equal(t.last.url, "/streams/7/events?last_event_id=r8");
    t.last.reasoning("🤔", "r8"); // a full duplicate
    t.last.reasoning("🤔 think", "r14"); // starts at 7: repeats the emoji
    t.last.token("No", 2);
    assert.equal(stream.reasoning, "Let me 🤔 think");
    assert.equal(stream.content, "No");
    assert.deepEqual(
      t.named("reasoning").map(([text]) => text),
      ["Let me 🤔", " think"],
    );
  });

  test("a drop after tokens resumes with the token id; replayed reasoning is not appended twice", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.reasoning("Plan", "r4");
    t.last.token("Do", 2);
    t.last.fail();
    t.timers.runNext();
    assert.equal(t.last.url, "/streams/7/events?last_event_id=2");
    t.last.reasoning("Plan", "r4");
    t.last.token("Do it", 5);
    assert.equal(stream.reasoning, "Plan");
    assert.equal(stream.content, "Do it");
    assert.equal(stream.lastEventId, "5");
    assert.deepEqual(t.named("reasoning").map(([text]) => text), ["Plan"]);
    t.last.fail();
    t.timers.runNext();
    assert.equal(t.last.url, "/streams/7/events?last_event_id=5");
  });

  test("/chat/stream resumes reasoning with last_event_id=<stream>:r<offset>", () => {
    const t = setup();
    const stream = openStream(CHAT, t.options);
    t.last.meta(7);
    t.last.reasoning("Think", "7:r5");
    assert.equal(stream.lastEventId, "7:r5");
    t.last.fail();
    t.timers.runNext();
    assert.equal(param(t.last.url, "last_event_id"), "7:r5");
    assert.equal(param(t.last.url, "prompt"), "hello there");
    t.last.reasoning("Think more", "7:r10");
    t.last.token("OK", "7:2");
    assert.equal(stream.reasoning, "Think more");
    assert.equal(stream.content, "OK");
    t.last.fail();
    t.timers.runNext();
    assert.equal(param(t.last.url, "last_event_id"), "7:2");
  });

  test("a last_event_id=r<N> in the URL starts the reasoning after it", () => {
    const t = setup();
    const stream = openStream("/chat/stream?prompt=hi&last_event_id=7:r17", t.options);
    assert.equal(stream.streamId, 7);
    assert.equal(stream.lastEventId, "7:r17");
    t.last.reasoning("ng it.", "7:r20"); // [14, 20): three of it are old
    assert.equal(stream.reasoning, "it.");
    t.last.fail();
    t.timers.runNext();
    assert.equal(param(t.last.url, "last_event_id"), "7:r20");
  });

  test("a 204 after a reasoning frame probes r<N-1> and recovers the ending", () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.token("Hi", 2);
    t.last.reasoning("Done?", "r5");
    t.last.fail(); // dropped before the ending
    t.timers.runNext();
    assert.equal(param(t.last.url, "last_event_id"), "r5");
    t.last.fail(2); // 204: nothing after r5
    t.timers.runNext();
    assert.equal(param(t.last.url, "last_event_id"), "r4");
    t.last.meta();
    t.last.reasoning("?", "r5");
    t.last.done();
    assert.equal(stream.status, "done");
    assert.equal(stream.reasoning, "Done?");
    assert.equal(stream.content, "Hi");
  });

  test("/chat/stream: the probe after a reasoning frame asks <stream>:r<N-1>", () => {
    const t = setup();
    openStream(CHAT, t.options);
    t.last.reasoning("Why", "7:r3");
    t.last.fail();
    t.timers.runNext();
    t.last.fail(2);
    t.timers.runNext();
    assert.equal(param(t.last.url, "last_event_id"), "7:r2");
  });
});

describe("stop()", () => {
  afterEach(() => {
    delete globalThis.document;
  });

  test("POSTs to /streams/<id>/stop with X-CSRFToken, then the stopped frame ends it", async () => {
    const t = setup({ options: { csrfToken: "tok" } });
    const stream = openStream(CHAT, t.options);
    t.last.meta(7);
    t.last.token("Par", "7:3");
    const result = await stream.stop();
    assert.deepEqual(result, { id: 7, status: "stopping" });
    assert.deepEqual(t.fetchCalls, [
      {
        url: "/streams/7/stop",
        init: { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": "tok" } },
      },
    ]);
    assert.equal(stream.status, "streaming", "stopped only when the server says so");
    const frame = { code: "stopped", message: "Stopped.", retryable: false };
    t.last.errorFrame(frame);
    assert.equal(stream.status, "stopped");
    assert.deepEqual(t.named("error"), [[frame]]);
    assert.equal(t.last.closed, true);
    assert.equal(stream.content, "Par");
  });

  test("reads the csrftoken cookie and keeps the URL's origin and prefix", async () => {
    globalThis.document = { cookie: "sessionid=x; csrftoken=from%20cookie" };
    const t = setup();
    const stream = openStream("https://example.com/app/streams/7/events", t.options);
    await stream.stop();
    assert.equal(t.fetchCalls[0].url, "https://example.com/app/streams/7/stop");
    assert.equal(t.fetchCalls[0].init.headers["X-CSRFToken"], "from cookie");
  });

  test("before the stream id is known, the POST waits for the meta frame", async () => {
    const t = setup({ options: { csrfToken: "tok" } });
    const stream = openStream(CHAT, t.options);
    const stopping = stream.stop();
    await settle();
    assert.equal(t.fetchCalls.length, 0);
    t.last.meta(12);
    assert.deepEqual(await stopping, { id: 7, status: "stopping" });
    assert.equal(t.fetchCalls[0].url, "/streams/12/stop");
  });

  test("after the stream ended, nothing is posted", async () => {
    const t = setup();
    const stream = openStream(EVENTS, t.options);
    t.last.done();
    assert.equal(await stream.stop(), null);
    assert.equal(t.fetchCalls.length, 0);
    assert.equal(stream.status, "done");
  });

  test("a refused POST rejects, and stop() may be tried again", async () => {
    const t = setup({ stopStatus: 403, stopBody: { error: "csrf", message: "CSRF check failed." } });
    const stream = openStream(EVENTS, t.options);
    await assert.rejects(stream.stop(), { status: 403, code: "csrf", message: "CSRF check failed." });
    await assert.rejects(stream.stop(), { status: 403 });
    assert.equal(t.fetchCalls.length, 2);
    assert.equal(stream.status, "connecting");
  });
});

import assert from "node:assert/strict";
import { test } from "node:test";

import React from "react";
import TestRenderer from "react-test-renderer";

import { useSSEStream } from "../static/streaming/use-sse-stream.js";
import { settle, setup } from "./fakes.js";

const { act, create } = TestRenderer;
globalThis.IS_REACT_ACT_ENVIRONMENT = true; // React 18: updates are wrapped in act()

function Probe({ url, options, result }) {
  result.current = useSSEStream(url, options);
  return null;
}

// Renders the hook and keeps what it returned last.
async function renderHook(url, options) {
  const result = { current: null };
  const element = (current) => React.createElement(Probe, { url: current, options, result });
  let renderer;
  // The hook opens its stream in a microtask: an async act lets it run.
  await act(async () => {
    renderer = create(element(url));
  });
  return {
    result,
    rerender: (next) => act(async () => renderer.update(element(next))),
    unmount: () => act(async () => renderer.unmount()),
  };
}

// Feeds frames to the fake EventSource inside act(), as a browser's events would be.
const send = (callback) => act(async () => callback());

test("content grows as frames arrive, and isDone becomes true on done", async () => {
  const t = setup();
  const { result } = await renderHook("/chat/stream?prompt=hi", t.options);
  assert.equal(t.instances.length, 1);
  assert.equal(result.current.status, "connecting");
  assert.equal(result.current.content, "");

  await send(() => {
    t.last.open();
    t.last.meta(7);
  });
  assert.equal(result.current.streamId, 7);
  assert.equal(result.current.status, "streaming");

  await send(() => t.last.token("Hello", "7:5"));
  assert.equal(result.current.content, "Hello");
  await send(() => t.last.token(",\nworld", "7:12"));
  assert.equal(result.current.content, "Hello,\nworld");
  assert.equal(result.current.isDone, false);

  await send(() => t.last.done());
  assert.equal(result.current.isDone, true);
  assert.equal(result.current.status, "done");
  assert.equal(result.current.error, null);
  assert.equal(t.last.closed, true);
  // The caller's own callbacks still run.
  assert.deepEqual(t.named("token").map(([text]) => text), ["Hello", ",\nworld"]);
  assert.equal(t.named("done").length, 1);

  await send(() => t.last.fail(2)); // the 204 a browser might still report
  assert.equal(t.instances.length, 1);
  assert.equal(result.current.status, "done");
});

test("reasoning grows apart from content, resumed by its own id", async () => {
  const t = setup();
  const { result } = await renderHook("/chat/stream?prompt=hi", t.options);
  assert.equal(result.current.reasoning, "");
  await send(() => {
    t.last.meta(7);
    t.last.reasoning("Think", "7:r5");
  });
  assert.equal(result.current.reasoning, "Think");
  assert.equal(result.current.content, "");

  await send(() => t.last.fail());
  await send(() => t.timers.runNext());
  assert.equal(new URLSearchParams(t.last.url.split("?")[1]).get("last_event_id"), "7:r5");
  await send(() => {
    t.last.reasoning("Think.", "7:r6");
    t.last.token("Yes", "7:3");
  });
  assert.equal(result.current.reasoning, "Think.");
  assert.equal(result.current.content, "Yes");
  // The caller's own callback still runs, with only the new text.
  assert.deepEqual(t.named("reasoning").map(([text]) => text), ["Think", "."]);
});

test("error is set from an error frame", async () => {
  const t = setup();
  const { result } = await renderHook("/streams/7/events", t.options);
  const frame = { code: "unavailable", message: "The provider is unavailable.", retryable: true };
  await send(() => {
    t.last.meta(7);
    t.last.token("Par", 3);
    t.last.errorFrame(frame);
  });
  assert.deepEqual(result.current.error, frame);
  assert.equal(result.current.status, "error");
  assert.equal(result.current.isDone, false);
  assert.equal(result.current.content, "Par");
});

test("stop() asks the server to stop, and the stopped frame ends the stream", async () => {
  const t = setup({ options: { csrfToken: "tok" } });
  const { result } = await renderHook("/streams/7/events", t.options);
  await send(() => t.last.token("Par", 3));
  let answer;
  await act(async () => {
    answer = await result.current.stop();
  });
  assert.deepEqual(answer, { id: 7, status: "stopping" });
  assert.equal(t.fetchCalls.length, 1);
  assert.equal(t.fetchCalls[0].url, "/streams/7/stop");
  assert.equal(t.fetchCalls[0].init.headers["X-CSRFToken"], "tok");
  assert.equal(t.fetchCalls[0].init.credentials, "same-origin");

  await send(() => t.last.errorFrame({ code: "stopped", message: "Stopped.", retryable: false }));
  assert.equal(result.current.status, "stopped");
  assert.equal(result.current.error.code, "stopped");
  assert.equal(result.current.content, "Par");
});

test("unmount closes the EventSource and stops reconnecting", async () => {
  const t = setup();
  const { result, unmount } = await renderHook("/streams/7/events", t.options);
  await send(() => t.last.token("a", 1));
  await send(() => t.last.fail());
  assert.equal(t.timers.pending.size, 1, "a reconnection is waiting");
  await unmount();
  assert.equal(t.last.closed, true);
  assert.equal(t.timers.pending.size, 0);
  assert.equal(t.instances.length, 1);
  assert.equal(result.current.content, "a");
});

test("a new url closes the old stream; null follows nothing", async () => {
  const t = setup();
  const { result, rerender } = await renderHook(null, t.options);
  assert.equal(t.instances.length, 0);
  assert.equal(result.current.status, "idle");
  assert.equal(await result.current.stop(), null);

  await rerender("/streams/1/events");
  await send(() => t.last.token("one", 3));
  assert.equal(result.current.content, "one");
  await rerender("/streams/2/events");
  assert.equal(t.instances.length, 2);
  assert.equal(t.instances[0].closed, true);
  assert.equal(t.instances[1].url, "/streams/2/events");
  assert.equal(result.current.content, "");
  assert.equal(result.current.streamId, 2);

  await rerender(null);
  assert.equal(t.instances[1].closed, true);
  assert.equal(result.current.status, "idle");
});

// React 18's StrictMode mounts, unmounts and remounts every effect in development;
// react-test-renderer does not replay that, so the test does it by hand. A mount
// undone in the same task must not construct an EventSource: for /chat/stream the
// request alone could start a paid generation.
test("a mount undone at once, as StrictMode does, opens no EventSource", async () => {
  const t = setup();
  const result = { current: null };
  const element = React.createElement(Probe, { url: "/chat/stream?prompt=hi", options: t.options, result });
  // Synchronous acts: the effect runs, then its cleanup, before any microtask.
  let renderer;
  act(() => {
    renderer = create(element);
  });
  act(() => renderer.unmount());
  await settle();
  assert.equal(t.instances.length, 0);

  const { result: again } = await renderHook("/chat/stream?prompt=hi", t.options);
  assert.equal(t.instances.length, 1);
  await send(() => t.last.token("x", "3:1"));
  assert.equal(again.current.content, "x");
});

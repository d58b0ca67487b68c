// Test doubles for sse-client.js: Node 20 has no EventSource, and tests drive time,
// randomness and the network by hand.

// A fresh EventSource class per test, with its own list of constructed instances.
export function fakeEventSource() {
  const instances = [];
  class FakeEventSource {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSED = 2;

    constructor(url, init) {
      this.url = url;
      this.init = init;
      this.readyState = FakeEventSource.CONNECTING;
      this.lastEventId = "";
      this.closed = false;
      this.listeners = new Map();
      instances.push(this);
    }

    addEventListener(type, listener) {
      if (!this.listeners.has(type)) this.listeners.set(type, new Set());
      this.listeners.get(type).add(listener);
    }

    removeEventListener(type, listener) {
      this.listeners.get(type)?.delete(listener);
    }

    close() {
      this.readyState = FakeEventSource.CLOSED;
      this.closed = true;
    }

    dispatch(event) {
      for (const listener of [...(this.listeners.get(event.type) ?? [])]) listener(event);
    }

    // Helpers for tests ---------------------------------------------------------
    open() {
      this.readyState = FakeEventSource.OPEN;
      this.dispatch({ type: "open" });
    }

    // A named event frame. Like a real EventSource, the last event id persists across
    // frames that carry no `id:` line.
    emit(type, data, id) {
      if (id !== undefined) this.lastEventId = id;
      this.dispatch({ type, data, lastEventId: this.lastEventId });
    }

    meta(streamId = 7) {
      this.emit("meta", JSON.stringify({ stream_id: streamId, provider: "demo", model: "demo" }));
    }

    token(text, id) {
      this.emit("token", text, String(id));
    }

    reasoning(text, id) {
      this.emit("reasoning", text, String(id));
    }

    done(usage = { input_tokens: 1, output_tokens: 2 }) {
      this.emit("usage", JSON.stringify(usage));
      this.emit("done", "[DONE]");
    }

    errorFrame(payload) {
      this.emit("error", JSON.stringify(payload));
    }

    // A transport error: CONNECTING for a dropped connection (the browser would
    // retry), CLOSED for a response that is not an event stream (204, 4xx, 5xx).
    fail(readyState = FakeEventSource.CONNECTING) {
      this.readyState = readyState;
      this.dispatch({ type: "error" });
    }
  }
  return { EventSource: FakeEventSource, instances };
}

// setTimeout/clearTimeout that only run when a test says so.
export function fakeTimers() {
  const pending = new Map();
  const delays = [];
  let nextId = 1;
  return {
    delays,
    pending,
    setTimeout(callback, ms) {
      const id = nextId++;
      pending.set(id, { callback, ms });
      delays.push(ms);
      return id;
    },
    clearTimeout(id) {
      pending.delete(id);
    },
    runNext() {
      const [id, timer] = pending.entries().next().value ?? [];
      if (id === undefined) throw new Error("no timer pending");
      pending.delete(id);
      timer.callback();
    },
  };
}

// fetch that records its calls and answers `status` with a JSON `body`.
export function fakeFetch(status = 202, body = { id: 7, status: "stopping" }) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init });
    return { ok: status >= 200 && status < 300, status, json: async () => body };
  };
  return { fetch, calls };
}

// Everything openStream needs, faked, plus a log of the callbacks it made.
export function setup(overrides = {}) {
  const { EventSource, instances } = fakeEventSource();
  const timers = fakeTimers();
  const network = fakeFetch(overrides.stopStatus, overrides.stopBody);
  const calls = [];
  const record = (name) => (...args) => calls.push([name, ...args]);
  const options = {
    EventSource,
    fetch: network.fetch,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    random: () => 0.5,
    onMeta: record("meta"),
    onToken: record("token"),
    onReasoning: record("reasoning"),
    onUsage: record("usage"),
    onDone: record("done"),
    onError: record("error"),
    onStatus: record("status"),
    ...overrides.options,
  };
  return {
    options,
    instances,
    timers,
    fetchCalls: network.calls,
    calls,
    named: (name) => calls.filter(([call]) => call === name).map(([, ...args]) => args),
    get last() {
      return instances.at(-1);
    },
  };
}

// Let promise callbacks (stop()'s fetch chain) run.
export const settle = () => new Promise((resolve) => setImmediate(resolve));

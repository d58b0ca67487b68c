/**
 * sse-client.js: follow one stream of the SSE relay with EventSource, resuming it
 * after a dropped connection without duplicating text or paying for a second answer.
 * A plain ES module with no dependencies and no build step.
 *
 * Import `openStream` from `/static/streaming/sse-client.js` (spelt out here as a
 * statement, the line would make collectstatic rewrite this file's name into itself,
 * which never settles), then:
 *   const stream = openStream(eventsUrl, { onToken: (text, { content }) => show(content) });
 *   stopButton.onclick = () => stream.stop();
 *
 * openStream(url, options) -> handle
 *
 *   url: `/streams/<id>/events` (preferred) or `/chat/stream?prompt=…`, absolute or
 *   relative. A `last_event_id` already in the URL (either kind, below) resumes from
 *   that point: `content` and `reasoning` then hold only the text after it.
 *
 *   options (all optional):
 *     onMeta(meta)                 {stream_id, provider, model}, on every connection
 *     onToken(text, {offset, content})  new answer text only; offset (the answer's
 *                                  length) counts code points
 *     onReasoning(text, {offset, reasoning})  likewise for the model's reasoning,
 *                                  relayed apart from the answer (offset: its length)
 *     onUsage(usage)               {input_tokens, output_tokens}
 *     onDone()                     the answer is complete
 *     onError(error)               the stream ended badly, called once: the server's
 *                                  error frame as sent ({code, message, retryable,
 *                                  retry_after?}; code "stopped" after a Stop), or one
 *                                  of ours: "connection_lost", "refused" (below)
 *     onStatus(status)             on every change of `status`
 *     csrfToken                    for stop(); default: the `csrftoken` cookie
 *     allowRestart = false         see "/chat/stream" below
 *     backoff = {initialMs: 500, maxMs: 15000, maxAttempts: 8}
 *     EventSource, fetch, setTimeout, clearTimeout, random: stand-ins for tests
 *
 *   handle:
 *     stop() -> Promise            POST /streams/<id>/stop (with X-CSRFToken,
 *                                  credentials "same-origin"). Resolves with the
 *                                  server's JSON, or null when nothing needed stopping
 *                                  (the stream already ended with done or an error
 *                                  frame); rejects with an Error {status, code} if the
 *                                  POST fails. The status becomes "stopped" when the
 *                                  server's "stopped" frame arrives. Called before the
 *                                  stream id is known (/chat/stream before its meta
 *                                  frame), the POST is sent as soon as it is. After
 *                                  close() or a lost connection it still POSTs: the
 *                                  generation may still be running.
 *     close()                      stop following (the generation goes on): status
 *                                  "closed" (told to onStatus), then no callbacks
 *     content, reasoning, status, error, streamId, lastEventId   read-only; error
 *                                  is null unless onError was called; streamId (a
 *                                  number) and lastEventId (the id of the last token
 *                                  or reasoning frame) are null until known
 *
 * status: "connecting" -> "streaming" <-> "reconnecting", then exactly one of
 *   "done" | "stopped" | "error" | "closed" (terminal: the EventSource is closed and
 *   nothing reconnects).
 *
 * Ids. A token frame's id is the answer's length after it (`42`), a reasoning frame's
 * is `r` and the reasoning's length (`r17`); on /chat/stream both are prefixed with
 * the stream id (`7:42`, `7:r17`). The two kinds may interleave.
 *
 * Reconnecting. On a dropped connection this client closes the EventSource itself
 * (so the browser's own reconnect never runs) and, after a backoff with full jitter
 * (random() * min(maxMs, initialMs * 2 ** attempt)), opens a new one on the same URL
 * with `last_event_id=<the last frame's id>`, of either kind; the server replays both
 * kinds after that point, in arrival order. The attempt count resets when a frame
 * arrives; `maxAttempts` reconnections in a row without a frame end the stream with
 * {code: "connection_lost", retryable: true}. Replayed text that overlaps what we
 * have is trimmed by offset, per kind, never appended twice.
 *
 * /chat/stream. Each plain request to it starts a new, paid generation. Once the meta
 * frame or a text frame has arrived, reconnections carry
 * `last_event_id=<stream>:<offset>` (or `<stream>:r<offset>`) and resume the same
 * generation. A connection lost before that cannot be resumed (there is no id to
 * resume), so the stream ends with "connection_lost" instead of reconnecting, unless
 * `allowRestart: true` says a second generation is acceptable.
 *
 * HTTP errors. EventSource hides status codes: a 401, 403, 404, 429, 5xx, or a 204
 * ("nothing after that id") all look like an error event with readyState CLOSED. This
 * client ends such a stream with {code: "refused", retryable: false} (after one extra
 * try described in onTransportError). Pages that need the real status should start
 * streams with `POST /streams/` (JSON answers with status codes, 429 included) and
 * then open its `events_url` here, rather than opening `/chat/stream` directly.
 */

const CLOSED = 2; // EventSource.CLOSED, which Node and test doubles may not define
const ENDED = new Set(["done", "stopped", "error", "closed"]);

export function openStream(url, options = {}) {
  const {
    onMeta,
    onToken,
    onReasoning,
    onUsage,
    onDone,
    onError,
    onStatus,
    csrfToken,
    allowRestart = false,
    backoff: { initialMs = 500, maxMs = 15000, maxAttempts = 8 } = {},
    // Locals, called as plain functions: window.fetch called as `options.fetch()`
    // throws "Illegal invocation".
    EventSource: EventSourceImpl = globalThis.EventSource,
    fetch: fetchImpl = globalThis.fetch,
    setTimeout: setTimer = globalThis.setTimeout,
    clearTimeout: clearTimer = globalThis.clearTimeout,
    random = Math.random,
  } = options;

  const chat = /\/chat\/stream\/?$/.test(pathOf(url));
  const given = new URLSearchParams(queryOf(url)).get("last_event_id");
  const start = given ? splitId(given) : null;

  const named = pathOf(url).match(/\/streams\/(\d+)\/events\/?$/);
  let streamId = start?.streamId ?? (named ? Number(named[1]) : null);
  // Per kind of text frame, keyed by event name: its length so far in code points
  // (what came before a given `last_event_id` included) and the text received.
  const texts = { token: { offset: 0, text: "" }, reasoning: { offset: 0, text: "" } };
  if (start) texts[start.kind].offset = start.offset;
  let lastKind = start?.kind ?? "token"; // resumes name an offset of this kind
  let lastEventId = given;
  let status = "connecting";
  let error = null;
  let ended = false; // an ending frame (done or error) arrived: the generation is over
  let source = null;
  let timer = null;
  let attempts = 0;
  let probed = false;
  let stopRequest = null; // {promise, resolve, reject} once stop() is waiting
  let stopSent = false;

  connect(url);

  function connect(target) {
    const es = new EventSourceImpl(target);
    source = es;
    // Events from an EventSource we have already dropped are ignored.
    const on = (type, handler) =>
      es.addEventListener(type, (event) => {
        if (es === source) handler(event);
      });
    on("open", () => setStatus("streaming"));
    on("meta", (event) => {
      received();
      const meta = parseJson(event.data);
      if (meta?.stream_id != null) streamId = meta.stream_id;
      if (stopRequest && !stopSent) sendStop();
      onMeta?.(meta);
    });
    on("token", (event) => {
      received();
      const fresh = append("token", event.data, event.lastEventId);
      const { offset, text } = texts.token;
      if (fresh != null) onToken?.(fresh, { offset, content: text });
    });
    on("reasoning", (event) => {
      received();
      const fresh = append("reasoning", event.data, event.lastEventId);
      const { offset, text } = texts.reasoning;
      if (fresh != null) onReasoning?.(fresh, { offset, reasoning: text });
    });
    on("usage", (event) => {
      received();
      onUsage?.(parseJson(event.data));
    });
    on("done", () => {
      ended = true;
      finish("done");
    });
    // One event name, two meanings: a server `event: error` frame is a MessageEvent
    // with data; a transport failure is a plain Event without.
    on("error", (event) => {
      if (typeof event.data === "string") {
        ended = true;
        const frame = parseJson(event.data) ?? { code: "internal", message: event.data, retryable: false };
        finish(frame.code === "stopped" ? "stopped" : "error", frame);
      } else {
        onTransportError(es.readyState === CLOSED);
      }
    });
  }

  function received() {
    attempts = 0;
    probed = false;
    setStatus("streaming");
  }

  // A text frame's id is its kind's length after it ("42", "r17", "7:42", "7:r17"),
  // so the frame covers [offset - length, offset) of that kind. Keep only what is
  // new, and return it (null for a replay of text we already have).
  function append(kind, text, id) {
    const part = texts[kind];
    const { streamId: idStream, offset: end } = splitId(id);
    if (idStream != null) streamId = idStream;
    if (end <= part.offset) return null;
    const fresh = dropCodePoints(text, part.offset - (end - codePoints(text)));
    part.offset = end;
    part.text += fresh;
    lastEventId = id;
    lastKind = kind;
    return fresh;
  }

  function onTransportError(refused) {
    dropSource();
    const offset = texts[lastKind].offset;
    if (refused) {
      // The server answered without an event stream. One legitimate case is a 204:
      // everything up to our id was delivered and the stream has finished, but its
      // ending frame was lost with the connection. Asking once for the last
      // character again (of the last frame's kind) makes a finished stream replay it
      // (trimmed above) and its ending; a real HTTP error is refused again and ends
      // the stream.
      if (probed || offset === 0 || resumeId(offset - 1) == null) {
        return finish("error", {
          code: "refused",
          message: "The server refused the stream (the status is hidden from EventSource).",
          retryable: false,
        });
      }
      probed = true;
      return retry(resumeId(offset - 1));
    }
    const id = resumeId(offset);
    if (attempts >= maxAttempts || (id == null && !allowRestart)) {
      return finish("error", {
        code: "connection_lost",
        message: id == null
          ? "The connection was lost before the stream started."
          : "The connection was lost and could not be restored.",
        retryable: true,
      });
    }
    retry(id);
  }

  // The id to resume from, at an offset of the last frame's kind ("42" or "r17"),
  // prefixed "<stream>:" for /chat/stream, whose plain URL would start another
  // generation (null while the stream id is unknown).
  function resumeId(at) {
    const id = lastKind === "reasoning" ? `r${at}` : String(at);
    if (!chat) return id;
    return streamId == null ? null : `${streamId}:${id}`;
  }

  function retry(id) {
    const delay = random() * Math.min(maxMs, initialMs * 2 ** attempts);
    attempts += 1;
    setStatus("reconnecting");
    timer = setTimer(() => {
      timer = null;
      connect(id == null ? url : withParam(url, "last_event_id", id));
    }, delay);
  }

  function finish(next, failure = null) {
    if (ENDED.has(status)) return;
    dropSource();
    if (timer != null) clearTimer(timer);
    timer = null;
    error = failure;
    status = next;
    if (stopRequest && !stopSent) stopRequest.resolve(null);
    if (failure) onError?.(failure);
    if (next === "done") onDone?.();
    onStatus?.(next);
  }

  function dropSource() {
    const es = source;
    source = null;
    es?.close();
  }

  function setStatus(next) {
    if (status === next || ENDED.has(status)) return;
    status = next;
    onStatus?.(next);
  }

  function stop() {
    if (stopRequest) return stopRequest.promise;
    // The generation is known to be over, or we cannot name it and never will.
    if (ended || (streamId == null && ENDED.has(status))) return Promise.resolve(null);
    stopRequest = deferred();
    if (streamId != null) sendStop(); // else on the meta frame
    return stopRequest.promise;
  }

  function sendStop() {
    const request = stopRequest;
    const token = csrfToken ?? readCookie("csrftoken");
    stopSent = true;
    Promise.resolve()
      .then(() =>
        fetchImpl(stopUrl(url, streamId), {
          method: "POST",
          credentials: "same-origin",
          headers: token ? { "X-CSRFToken": token } : {},
        }),
      )
      .then(async (response) => {
        const body = await response.json().catch(() => null);
        if (response.ok) return body;
        const message = body?.message ?? `Stop failed with HTTP ${response.status}.`;
        throw Object.assign(new Error(message), { status: response.status, code: body?.error });
      })
      .then(request.resolve, (failure) => {
        stopRequest = null; // a later stop() may try again
        stopSent = false;
        request.reject(failure);
      });
  }

  return {
    stop,
    close: () => finish("closed"),
    get content() {
      return texts.token.text;
    },
    get reasoning() {
      return texts.reasoning.text;
    },
    get status() {
      return status;
    },
    get error() {
      return error;
    },
    get streamId() {
      return streamId;
    },
    get lastEventId() {
      return lastEventId;
    },
  };
}

// "42" -> {streamId: null, kind: "token", offset: 42};
// "7:r17" -> {streamId: 7, kind: "reasoning", offset: 17}.
function splitId(id) {
  const colon = id.lastIndexOf(":");
  const tail = id.slice(colon + 1);
  const reasoning = tail.startsWith("r");
  const offset = Number(reasoning ? tail.slice(1) : tail);
  return {
    streamId: colon > 0 ? Number(id.slice(0, colon)) : null,
    kind: reasoning ? "reasoning" : "token",
    offset: Number.isInteger(offset) ? offset : 0,
  };
}

// The server counts offsets in Unicode code points; JS string lengths are UTF-16 units.
function codePoints(text) {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

function dropCodePoints(text, count) {
  let index = 0;
  for (const char of text) {
    if (count <= 0) break;
    index += char.length;
    count -= 1;
  }
  return text.slice(index);
}

// URLs are edited as strings so a relative URL stays relative to the page.
function pathOf(url) {
  return url.split(/[?#]/, 1)[0];
}

function queryOf(url) {
  const match = url.match(/\?([^#]*)/);
  return match ? match[1] : "";
}

function withParam(url, name, value) {
  const hash = url.includes("#") ? url.slice(url.indexOf("#")) : "";
  const params = new URLSearchParams(queryOf(url));
  params.set(name, value);
  return `${pathOf(url)}?${params}${hash}`;
}

// The stop endpoint beside the stream's own URL (same origin and path prefix).
function stopUrl(url, streamId) {
  const base = pathOf(url).match(/^(.*?)\/(?:chat\/stream|streams\/\d+\/events)\/?$/)?.[1] ?? "";
  return `${base}/streams/${streamId}/stop`;
}

function readCookie(name) {
  const cookies = globalThis.document?.cookie ?? "";
  for (const pair of cookies.split(";")) {
    const [key, ...rest] = pair.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

function parseJson(data) {
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

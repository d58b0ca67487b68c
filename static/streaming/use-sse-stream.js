/**
 * use-sse-stream.js: a React hook over sse-client.js.
 *
 *   const { content, reasoning, isDone, error, status, streamId, stop } =
 *     useSSEStream(url, options);
 *
 *   url      the stream to follow (`/streams/<id>/events`, or `/chat/stream?prompt=…`);
 *            null or undefined follows nothing. A new url closes the old stream and
 *            opens the new one; unmounting closes it. Closing only stops following:
 *            use stop() to end the generation itself.
 *   options  those of openStream() (see sse-client.js). They are read when the stream
 *            opens, so changing them does not reopen it; the callbacks (onToken,
 *            onReasoning, …) are always the latest ones passed.
 *
 *   content   the answer so far ("" at first)
 *   reasoning the model's reasoning so far, relayed apart from the answer ("" at
 *             first, and for models that send none)
 *   status    "idle" (no url), then openStream's: "connecting", "streaming",
 *             "reconnecting", "done", "stopped", "error", "closed"
 *   isDone    status === "done"
 *   error     null, or what onError received: the server's error frame
 *             ({code, message, retryable, retry_after?}; code "stopped" after a Stop)
 *             or the client's ({code: "connection_lost" | "refused", …})
 *   streamId  from the meta frame (or the events URL), else null
 *   stop()    -> Promise: asks the server to stop the generation (see openStream's
 *             stop(); it rejects when the POST fails, so catch it)
 *
 * Reconnection, never starting a second generation, and never looping after done all
 * come from openStream.
 *
 * No build step: "react" below is a bare specifier, which a browser resolves only
 * through an import map on the page, for example
 *   <script type="importmap">{"imports": {"react": "/static/vendor/react.mjs"}}</script>
 * pointing at an ES module build of React 18 served by this site.
 */
import { useCallback, useEffect, useRef, useState } from "react";
import { openStream } from "./sse-client.js";

export { openStream };

const IDLE = { content: "", reasoning: "", status: "idle", error: null, streamId: null };
const CALLBACKS = ["onMeta", "onToken", "onReasoning", "onUsage", "onDone", "onError", "onStatus"];

export function useSSEStream(url, options = {}) {
  const [state, setState] = useState(IDLE);
  const handleRef = useRef(null);
  const optionsRef = useRef(options);

  useEffect(() => {
    optionsRef.current = options;
  });

  useEffect(() => {
    setState(url == null ? IDLE : { ...IDLE, status: "connecting" });
    if (url == null) return undefined;
    let live = true;
    let handle = null;
    const snapshot = () => {
      if (live && handle) {
        const { content, reasoning, status, error, streamId } = handle;
        setState({ content, reasoning, status, error, streamId });
      }
    };
    // Open in a microtask, not now: React's StrictMode mounts, unmounts and mounts
    // again synchronously in development, and an EventSource opened and closed at
    // once may still reach the server, which for /chat/stream is a paid generation.
    queueMicrotask(() => {
      if (!live) return;
      const relayed = Object.fromEntries(
        CALLBACKS.map((name) => [
          name,
          (...args) => {
            snapshot();
            optionsRef.current?.[name]?.(...args);
          },
        ]),
      );
      handle = openStream(url, { ...optionsRef.current, ...relayed });
      handleRef.current = handle;
      snapshot();
    });
    return () => {
      live = false;
      handle?.close();
      if (handleRef.current === handle) handleRef.current = null;
    };
  }, [url]);

  const stop = useCallback(() => handleRef.current?.stop() ?? Promise.resolve(null), []);

  return { ...state, isDone: state.status === "done", stop };
}

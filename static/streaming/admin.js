// Admin: render stored answers as sanitised Markdown, and follow a stream live.
import { openStream } from "./sse-client.js";
import { LiveMarkdown, renderInto } from "./markdown.js";

for (const element of document.querySelectorAll("[data-markdown]")) {
  renderInto(element, element.textContent);
}

const tail = document.getElementById("live-tail");
if (tail) {
  const status = document.getElementById("live-status");
  const markdown = new LiveMarkdown(document.getElementById("live-answer"));
  const show = (text) => { status.textContent = text; };
  openStream(tail.dataset.eventsUrl, {
    onStatus: (state) => show({ connecting: "Connecting…", streaming: "Streaming…",
      reconnecting: "Reconnecting…", done: "Done." }[state] ?? status.textContent),
    onToken: (_text, { content }) => markdown.set(content),
    onDone: () => markdown.finish(),
    onError: (error) => {
      markdown.finish();
      show(`Ended: ${error.code}: ${error.message}`);
    },
  });
}

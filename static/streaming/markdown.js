// Markdown for answers: marked renders, DOMPurify removes anything that could run.
// Provider text is untrusted: `<img src=x onerror=…>`, `<script>` and `javascript:`
// links must stay inert, so every HTML string goes through sanitize() before the DOM.
import { marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";

marked.setOptions({ gfm: true });

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

export function toHtml(text) {
  return DOMPurify.sanitize(marked.parse(text), { USE_PROFILES: { html: true } });
}

export function renderInto(element, text) {
  element.innerHTML = toHtml(text);
}

// The offset just after the last blank line that is outside a code fence, at or after
// `from`: everything before it is a finished run of blocks that will not change.
function settledEnd(text, from) {
  let end = from;
  let fence = null;
  let position = from;
  while (position < text.length) {
    const next = text.indexOf("\n", position);
    if (next === -1) break;
    const line = text.slice(position, next);
    const marker = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (marker) {
      if (fence === null) fence = marker[1][0];
      else if (marker[1][0] === fence) fence = null;
    } else if (fence === null && line.trim() === "" && next + 1 < text.length) {
      end = next + 1;
    }
    position = next + 1;
  }
  return end;
}

// Renders a growing answer at most once per animation frame. Finished blocks are
// rendered once and kept; only the unfinished tail is rendered again, so a
// 100,000-character answer costs no more per frame than a short one.
export class LiveMarkdown {
  constructor(element) {
    this.element = element;
    this.settledHtml = document.createElement("div");
    this.tail = document.createElement("div");
    this.settledHtml.className = "settled";
    element.replaceChildren(this.settledHtml, this.tail);
    this.text = "";
    this.settled = 0;
    this.frame = 0;
  }

  set(text) {
    this.text = text;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    const cut = settledEnd(this.text, this.settled);
    if (cut > this.settled) {
      this.settledHtml.insertAdjacentHTML("beforeend", toHtml(this.text.slice(this.settled, cut)));
      this.settled = cut;
    }
    this.tail.innerHTML = toHtml(this.text.slice(this.settled));
  }

  // The answer is complete: render it whole once, so lists and references that
  // span blocks come out as Markdown means them.
  finish() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    renderInto(this.element, this.text);
  }
}

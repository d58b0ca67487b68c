// The chat page: start a stream with POST /streams/ (so errors such as 429 are
// readable), follow it with EventSource through sse-client.js, render Markdown live,
// and the model's reasoning apart from it, as plain text in a closed "Thinking" block.
import { openStream } from "./sse-client.js";
import { LiveMarkdown, renderInto } from "./markdown.js";

const page = JSON.parse(document.getElementById("page-data").textContent);
const form = document.getElementById("prompt-form");
const prompt = document.getElementById("prompt");
const statusLine = document.getElementById("status");
const stopButton = document.getElementById("stop");
const sendButton = document.getElementById("send");
const messages = document.getElementById("messages");
const picker = document.getElementById("model-picker");
const template = document.getElementById("message-template");
const csrfToken = form.querySelector("[name=csrfmiddlewaretoken]").value;

const STATUS_TEXT = {
  connecting: "Connecting…",
  streaming: "Streaming…",
  reconnecting: "Connection lost, reconnecting…",
  done: "Done.",
  stopped: "Stopped.",
};

// The raw Markdown of each assistant message, for Copy (the DOM holds rendered HTML).
const answers = new WeakMap();
let current = null; // the stream this page is following: {client, item, markdown}

function setStatus(text, state) {
  statusLine.textContent = text;
  statusLine.dataset.state = state;
}

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.hidden = !busy;
}

function addMessage(role) {
  document.getElementById("placeholder")?.remove();
  let item;
  if (role === "assistant") {
    item = template.content.firstElementChild.cloneNode(true);
  } else {
    item = document.createElement("li");
    item.className = "message user";
    item.innerHTML = '<div class="role">You</div><div class="body"></div>';
  }
  messages.append(item);
  return item;
}

function scrollToEnd() {
  const nearEnd = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 120;
  if (nearEnd) messages.scrollTop = messages.scrollHeight;
}

function showError(item, error) {
  const box = item.querySelector(".message-error");
  let text = error.message || "The answer failed.";
  if (error.retry_after) text += ` Try again in ${Math.ceil(error.retry_after)} s.`;
  box.textContent = text;
  box.hidden = false;
  item.querySelector(".regenerate").textContent = "Retry";
}

// The reasoning of the answer `item` is about to follow, emptied (a regenerated
// answer replaces it, a resumed one has it replayed). Its text is untrusted like the
// answer's, and only ever added as text: never parsed as HTML or Markdown.
function thinkingOf(item) {
  const block = item.querySelector(".thinking");
  const summary = block.querySelector("summary");
  const text = document.createTextNode("");
  block.querySelector(".thinking-body").replaceChildren(text);
  block.hidden = true;
  block.open = false;
  summary.textContent = "Thinking";
  return {
    add(fresh, { answering }) {
      text.appendData(fresh);
      block.hidden = false;
      summary.textContent = answering ? "Thinking" : "Thinking…";
    },
    // The answer has started, or the stream ended: the model is no longer thinking.
    settle() {
      summary.textContent = "Thinking";
    },
  };
}

function follow(item, eventsUrl) {
  const body = item.querySelector("[data-markdown]");
  const markdown = new LiveMarkdown(body);
  const thinking = thinkingOf(item);
  item.dataset.status = "streaming";
  item.querySelector(".message-error").hidden = true;
  item.querySelector(".message-state").textContent = "";
  body.setAttribute("aria-busy", "true");

  const finish = (status, error) => {
    markdown.finish();
    thinking.settle();
    answers.set(item, client.content);
    body.removeAttribute("aria-busy");
    item.dataset.status = status;
    if (status === "cancelled") item.querySelector(".message-state").textContent = "Stopped";
    if (error) {
      showError(item, error);
      setStatus(error.message || "The answer failed.", "error");
    }
    if (current?.item === item) current = null;
    setBusy(false);
  };

  const client = openStream(eventsUrl, {
    csrfToken,
    onToken: (_text, { content }) => {
      markdown.set(content);
      thinking.settle();
      requestAnimationFrame(scrollToEnd);
    },
    onReasoning: (text) => {
      thinking.add(text, { answering: client.content !== "" });
      requestAnimationFrame(scrollToEnd);
    },
    onStatus: (status) => {
      if (STATUS_TEXT[status]) setStatus(STATUS_TEXT[status], status);
    },
    onDone: () => finish("completed"),
    onError: (error) => {
      if (error.code === "stopped") finish("cancelled");
      else finish("error", error);
    },
  });
  current = { client, item, markdown };
  setBusy(true);
}

async function start(fields, replacing = null) {
  if (current) return;
  const choice = picker.value;
  const split = choice.indexOf(":");
  const body = {
    ...fields,
    provider: choice.slice(0, split),
    model: choice.slice(split + 1),
    conversation: page.conversationId ?? "",
  };
  setBusy(true);
  setStatus(STATUS_TEXT.connecting, "connecting");
  let response;
  let payload = {};
  try {
    response = await fetch(page.streamsUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify(body),
    });
    payload = await response.json().catch(() => ({}));
  } catch {
    setStatus("Could not reach the server. Check your connection and try again.", "error");
    setBusy(false);
    return;
  }
  if (!response.ok) {
    let text = payload.message || `The server answered ${response.status}.`;
    const after = response.headers.get("Retry-After");
    if (response.status === 429 && after) text += ` Try again in ${after} s.`;
    setStatus(text, "error");
    setBusy(false);
    return;
  }
  if (!fields.regenerate) {
    addMessage("user").querySelector(".body").textContent = fields.prompt;
    prompt.value = "";
  }
  if (payload.conversation_id !== page.conversationId) adoptConversation(payload);
  const item = replacing ?? addMessage("assistant");
  item.dataset.streamId = payload.id;
  follow(item, payload.events_url);
  scrollToEnd();
}

// The first answer of a new chat created its conversation: show it as the current one.
function adoptConversation({ conversation_id: id, conversation_url: url, conversation_title: title }) {
  page.conversationId = id;
  history.replaceState(null, "", url);
  document.getElementById("chat-title").textContent = title;
  document.title = `${title} · SSE relay`;
  const list = document.getElementById("conversations");
  list.querySelector(".empty")?.remove();
  list.querySelector(".current")?.classList.remove("current");
  const entry = document.createElement("li");
  entry.className = "current";
  const link = document.createElement("a");
  link.href = url;
  link.textContent = title;
  link.setAttribute("aria-current", "page");
  entry.append(link);
  list.prepend(entry);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (prompt.value.trim()) start({ prompt: prompt.value });
});

prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

stopButton.addEventListener("click", () => current?.client.stop());

messages.addEventListener("click", async (event) => {
  const item = event.target.closest(".message.assistant");
  if (!item) return;
  if (event.target.matches(".copy")) {
    const text = current?.item === item ? current.client.content : answers.get(item) ?? "";
    await navigator.clipboard.writeText(text);
    setStatus("Copied.", "done");
  } else if (event.target.matches(".regenerate")) {
    start({ regenerate: true }, item);
  }
});

for (const confirmed of document.querySelectorAll("form[data-confirm]")) {
  confirmed.addEventListener("submit", (event) => {
    if (!window.confirm(confirmed.dataset.confirm)) event.preventDefault();
  });
}

// Answers rendered by the server arrive as plain text: render their Markdown, and
// follow the one still streaming (after a reload, or opened in a second tab).
for (const item of messages.querySelectorAll(".message.assistant")) {
  const body = item.querySelector("[data-markdown]");
  answers.set(item, body.textContent);
  if (item.dataset.status === "streaming") {
    follow(item, `${page.streamsUrl}${item.dataset.streamId}/events`);
  } else {
    renderInto(body, body.textContent);
  }
}

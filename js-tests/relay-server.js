// The project as production runs it (`manage.py serve`, daphne) on a free port of
// 127.0.0.1, with a temporary SQLite database, a user and an API token, in front of
// the fake provider (bench/fake_provider.py) as both the openai and the anthropic
// provider, for the tests of real clients.
//
// It needs the checkout's virtualenv (.venv/bin/python, `make install`). Without it
// the tests that use it are skipped, except under CI=true, where they fail.

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const PYTHON = join(ROOT, ".venv", "bin", "python");
const FAKE_PROVIDER = join(ROOT, "bench", "fake_provider.py");
const PROVIDER_KEY = "sk-js-tests-" + Math.random().toString(36).slice(2);

// Why the server tests cannot run here, or null when they can. Under CI=true a
// missing virtualenv is a failure, not a skip: a green CI must mean they ran.
export function unavailable() {
  if (existsSync(PYTHON)) return null;
  const reason = `no Python virtualenv at ${PYTHON} (run make install)`;
  if (process.env.CI === "true") throw new Error(`CI=true: ${reason}`);
  return reason;
}

// The exact text the fake provider streams for `options`, e.g. "tokens=20".
export const providerText = (options) => printed("--print-text", options);

// The exact reasoning it streams before that text, e.g. for "reasoning=5&tokens=6".
export const providerReasoning = (options) => printed("--print-reasoning", options);

function printed(flag, options) {
  return JSON.parse(run([FAKE_PROVIDER, flag, options], {}));
}

// A directive for the fake provider, to put in a prompt.
export const fake = (options) => `[fake?${options}]`;

export async function startRelay(extraEnv = {}) {
  const directory = mkdtempSync(join(tmpdir(), "relay-js-"));
  const children = [];
  const stop = () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
    rmSync(directory, { recursive: true, force: true });
  };
  try {
    const openai = startProvider(directory, "openai", ["--api-key", PROVIDER_KEY]);
    // The fake checks an Anthropic key in x-api-key, but anthropic 2.x sends it as
    // Authorization: Bearer (as tests/conftest.py::anthropic_server says): Anthropic
    // traffic goes to a second fake that checks no key.
    const anthropic = startProvider(directory, "anthropic", []);
    children.push(openai.child, anthropic.child);
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME ?? directory,
      DJANGO_SETTINGS_MODULE: "config.settings",
      DATABASE_URL: `sqlite:///${join(directory, "db.sqlite3")}`,
      SECRET_KEY: "js-tests-" + Math.random().toString(36).slice(2),
      DEBUG: "false",
      SECURE_SSL_REDIRECT: "false",
      SECURE_HSTS_SECONDS: "0",
      ALLOWED_HOSTS: "127.0.0.1",
      STATIC_ROOT: join(directory, "static"),
      LOG_LEVEL: "WARNING",
      OPENAI_API_KEY: PROVIDER_KEY,
      ANTHROPIC_API_KEY: PROVIDER_KEY,
      ANTHROPIC_MODEL: "claude-sonnet-4-5",
      // The fake thinks when a prompt asks; the relay asks for thinking as it would
      // of a real model, within a budget.
      ANTHROPIC_THINKING_BUDGET_BY_MODEL: "claude-sonnet-4-5=1024",
      DEFAULT_PROVIDER: "openai",
      DEMO_PROVIDER: "true",
      DEMO_TOKEN_DELAY_MS: "20",
      PROVIDER_MAX_RETRIES: "0",
      STREAM_CHECKPOINT_SECONDS: "0.2", // the row keeps up with the answer
      ...extraEnv,
    };
    run(["manage.py", "migrate", "--noinput", "-v", "0"], env);
    run(["manage.py", "ensure_admin", "--username", "tester"], env);
    const token = run(["manage.py", "create_api_token", "tester"], env).trim();
    env.OPENAI_BASE_URL = `${await providerUrl(openai)}/v1`;
    env.ANTHROPIC_BASE_URL = await providerUrl(anthropic); // its SDK adds the /v1
    const port = await freePort();
    const relay = spawn(
      PYTHON,
      ["manage.py", "serve", "--host", "127.0.0.1", "--port", String(port), "--drain", "1"],
      { cwd: ROOT, env, stdio: ["ignore", "ignore", "pipe"] },
    );
    children.push(relay);
    let log = "";
    relay.stderr.on("data", (chunk) => (log += chunk));
    const url = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${url}/api/chat/x/stream`)).status === 401, relay, () => log);
    return { url, token, env, stop, log: () => log, manage: (...args) => run(["manage.py", ...args], env) };
  } catch (error) {
    stop();
    throw error;
  }
}

function startProvider(directory, name, args) {
  const portFile = join(directory, `${name}.port`);
  const child = spawn(PYTHON, [FAKE_PROVIDER, "--port", "0", "--port-file", portFile, ...args], {
    cwd: ROOT,
    stdio: "ignore",
  });
  return { child, portFile };
}

async function providerUrl({ child, portFile }) {
  const port = () => (existsSync(portFile) ? readFileSync(portFile, "utf8").trim() : "");
  await waitFor(async () => port() !== "", child);
  return `http://127.0.0.1:${port()}`;
}

function run(args, env) {
  const result = spawnSync(PYTHON, args, { cwd: ROOT, env, encoding: "utf8", timeout: 30_000 });
  if (result.status !== 0) {
    throw new Error(`${args.join(" ")} failed (${result.status}):\n${result.stderr}`);
  }
  return result.stdout;
}

async function waitFor(ready, child, log = () => "") {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}:\n${log()}`);
    try {
      if (await ready()) return;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  throw new Error(`did not start in time:\n${log()}`);
}

function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
  });
}

// The project as production runs it (`manage.py serve`, daphne) on a free port of
// 127.0.0.1, with a temporary SQLite database, a user and an API token, in front of
// the fake provider (bench/fake_provider.py), for the tests of real clients.
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
export function providerText(options) {
  const result = run([FAKE_PROVIDER, "--print-text", options], {});
  return JSON.parse(result);
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
    const portFile = join(directory, "provider.port");
    const provider = spawn(
      PYTHON,
      [FAKE_PROVIDER, "--port", "0", "--port-file", portFile, "--api-key", PROVIDER_KEY],
      { cwd: ROOT, stdio: "ignore" },
    );
    children.push(provider);
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
    env.OPENAI_BASE_URL = `${await providerUrl(provider, portFile)}/v1`;
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

async function providerUrl(child, portFile) {
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

// What the console's browser tests share: the stdio protocol with the Go test that runs them
// (a line "STEP <name>" asks the test to do or check something; the test answers "ok"), checks
// that print what they passed, and how Debian's chromium is started.
import { createInterface } from "node:readline";

const replies = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// step hands over to the Go test and waits for its answer.
export async function step(name) {
  console.log(`STEP ${name}`);
  const { value, done } = await replies.next();
  if (done || value.trim() !== "ok") throw new Error(`step ${name}: test answered ${value}`);
}

export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

export const viewport = { width: 1366, height: 900 };

// launchOptions start the system chromium headless (CHROMIUM overrides its path).
export const launchOptions = {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
};

// watchErrors collects a page's Content-Security-Policy refusals and uncaught script errors.
export function watchErrors(page, into) {
  page.on("console", (m) => { if (m.type() === "error" && /Content.Security.Policy|Refused to/i.test(m.text())) into.push(m.text()); });
  page.on("pageerror", (e) => into.push(String(e)));
}

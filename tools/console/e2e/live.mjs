// Real-browser test of the console against the whole system, run by TestE2EConsoleLiveRollout
// (e2e_live_test.go): the four services, and fleetsim hosts patched over SSH. A rollout waits
// for approval; the approver opens it, approves it in another tab, and watches the first tab
// (never reloaded) as the executor patches the hosts. Steps ("STEP <name>") ask the test to
// check the bus and the hosts.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { step, check, viewport, launchOptions, watchErrors } from "./browser.mjs";

const base = process.env.CONSOLE_URL;
const rollout = process.env.ROLLOUT_ID;
const planHash = process.env.PLAN_HASH;
const hosts = Number(process.env.HOSTS);
const maxUnavailable = Number(process.env.MAX_UNAVAILABLE); // the fleet's policy
const approver = process.env.APPROVER; // name=token of the fleet's approver
const other = process.env.OTHER; // name=token of someone signed in who is not an approver
const fixed = process.env.FIXED_VERSION; // libssl3 after the upgrade
const shots = process.env.SCREENSHOTS;
mkdirSync(shots, { recursive: true });

const [approverName, approverToken] = approver.split("=");
const otherToken = other.split("=")[1];
const rolloutURL = `${base}/rollouts/${rollout}`;
const approveURL = `${rolloutURL}/approve`;
const approveForm = 'form[data-verb="approve"]';
const hostStates = (page) => page.$$eval("tr[data-host]", (rows) => rows.map((r) => r.dataset.state));
const text = async (page, sel) => ((await page.textContent(sel)) || "").trim();

const browser = await chromium.launch(launchOptions);
const errors = [];
try {
  const ctx = await browser.newContext({ viewport });
  const watch = await ctx.newPage();
  watchErrors(watch, errors);
  const shot = (page, name, fullPage = true) => page.screenshot({ path: join(shots, `live-${name}.png`), fullPage });

  // Without a session the approval is refused.
  let res = await ctx.request.post(approveURL, { form: { plan_hash: planHash, csrf: "x" }, maxRedirects: 0 });
  check(res.status() === 401, `approve without signing in is refused (${res.status()})`);

  // The approver signs in: the overview shows every host exposed and the rollout waiting.
  await watch.goto(`${base}/`);
  check(watch.url().startsWith(`${base}/login`), "the overview without a session leads to the sign-in page");
  await watch.fill("#token", approverToken);
  await Promise.all([watch.waitForURL(`${base}/`), watch.click("button[type=submit]")]);
  check(await text(watch, "#t-exposed") === String(hosts), `the overview shows the ${hosts} hosts exposed`);
  const link = watch.locator(`tr:has(a[href="/rollouts/${rollout}"])`);
  check(await link.count() === 1 && (await link.locator(".badge").textContent()).trim() === "awaiting_approval",
    "the overview lists the rollout as awaiting approval");
  await shot(watch, "01-overview");

  // Signed in, but without the CSRF token: refused.
  res = await ctx.request.post(approveURL, { form: { plan_hash: planHash }, maxRedirects: 0 });
  check(res.status() === 403, `approve without the CSRF token is refused (${res.status()})`);

  // Open the rollout from the overview and follow the canary's output. This page stays open,
  // never reloaded, until the rollout ends.
  await Promise.all([watch.waitForURL(rolloutURL), link.locator(`a[href="/rollouts/${rollout}"]`).click()]);
  await watch.waitForSelector("#r-live.on");
  await watch.evaluate(() => { window.__sameDocument = true; });
  check(await text(watch, "#r-state") === "awaiting_approval", "the rollout page shows the rollout awaiting approval");
  check(await watch.inputValue(`${approveForm} input[name="plan_hash"]`) === planHash, "the approve form names the plan hash");
  let states = await hostStates(watch);
  check(states.length === hosts && states.every((s) => s === "pending"), `all ${hosts} hosts are pending (${states})`);
  const canary = await watch.getAttribute("tr[data-host]", "data-host"); // rows are in wave order
  check(await text(watch, `tr[data-host="${canary}"] td:nth-child(2)`) === "0", `${canary} is the canary (wave 0)`);
  // Record, as the page changes: the most hosts it ever shows in flight (dispatched or
  // running), and the host states when the canary turns green.
  await watch.evaluate((canary) => {
    window.__maxInFlight = 0;
    new MutationObserver(() => {
      const rows = [...document.querySelectorAll("tr[data-host]")];
      const inFlight = rows.filter((r) => r.dataset.state === "dispatched" || r.dataset.state === "running").length;
      window.__maxInFlight = Math.max(window.__maxInFlight, inFlight);
      if (!window.__atCanary && rows.some((r) => r.dataset.host === canary && r.dataset.state === "succeeded")) {
        window.__atCanary = rows.map((r) => r.dataset.state);
      }
    }).observe(document.querySelector("table.hosts"), { subtree: true, attributeFilter: ["data-state"] });
  }, canary);
  await watch.click(`button[data-tail="${canary}"]`);
  await watch.waitForSelector(`#tail[data-following="${canary}"]`);
  await shot(watch, "02-awaiting-approval");

  // Someone signed in who is not an approver sees a disabled button, and is refused.
  const otherCtx = await browser.newContext({ viewport });
  const otherPage = await otherCtx.newPage();
  watchErrors(otherPage, errors);
  await otherPage.goto(rolloutURL);
  await otherPage.fill("#token", otherToken);
  await Promise.all([otherPage.waitForURL(rolloutURL), otherPage.click("button[type=submit]")]);
  check(await otherPage.isDisabled(`${approveForm} button[type=submit]`), "a non-approver's Approve button is disabled");
  const otherCSRF = await otherPage.inputValue(`${approveForm} input[name="csrf"]`);
  res = await otherCtx.request.post(approveURL, { form: { plan_hash: planHash, csrf: otherCSRF }, maxRedirects: 0 });
  check(res.status() === 403 && (await res.text()).includes("not an approver"), `a non-approver's approval is refused (${res.status()})`);
  await otherCtx.close();
  await step("awaiting");

  // Approve in a second tab.
  const tab = await ctx.newPage();
  watchErrors(tab, errors);
  await tab.goto(rolloutURL);
  await tab.fill(`${approveForm} input[name="reason"]`, "plan checked in the console");
  await tab.click(`${approveForm} button[type=submit]`);
  const flash = await text(tab, ".flash");
  check(flash.includes(`You approved plan ${planHash.slice(0, 12)}`), `the console confirms the approval (${flash})`);
  await shot(tab, "03-approved");
  await tab.close();
  await step("approved");

  // The first tab follows: approved by the approver, the canary turns green while the other
  // hosts wait for it, then every host, then the rollout completes.
  await watch.waitForFunction((who) => document.querySelector("#r-approved").textContent.trim() === who, approverName);
  check(true, `the open page shows the rollout approved by ${approverName}`);
  await watch.waitForSelector(`${approveForm}[hidden]`, { state: "attached" });
  check(true, "the approve form is hidden once approved");
  await watch.waitForSelector(`tr[data-host="${canary}"][data-state="succeeded"] .badge.ok`, { timeout: 120000 });
  states = await watch.evaluate(() => window.__atCanary);
  check(states.filter((s) => s === "succeeded").length === 1, `the canary turned green first (${states})`);
  await watch.waitForFunction(() => document.querySelector("#tail").textContent.includes("Setting up libssl3"));
  check(true, "the output tail shows the canary's apt output");
  await shot(watch, "04-canary-green");
  await watch.waitForFunction((n) => document.querySelectorAll('tr[data-host][data-state="succeeded"] .badge.ok').length === n,
    hosts, { timeout: 180000 });
  check(true, `all ${hosts} hosts turned green`);
  await watch.waitForFunction(() => document.querySelector("#r-state").textContent.trim() === "completed", null, { timeout: 60000 });
  check((await watch.getAttribute("#r-state", "class")).includes("ok"), "the rollout is shown completed");
  check(await text(watch, "#r-summary") === `${hosts} of ${hosts} hosts done`, "the summary counts every host");
  check(await watch.evaluate(() => window.__sameDocument === true), "all of it without a reload");
  const inFlight = await watch.evaluate(() => window.__maxInFlight);
  check(inFlight === maxUnavailable, `the page showed at most ${inFlight} host(s) in flight at once, as max_unavailable (${maxUnavailable}) allows`);
  const updates = await watch.evaluate(() => Number(document.body.dataset.liveUpdates));
  check(updates > hosts, `the page moved on by live updates (${updates})`);
  await shot(watch, "05-completed");
  await step("completed");

  // The canary's page: the upgrade in its history, and the executor's stored log.
  await watch.goto(`${base}/hosts/${canary}`);
  const history = await text(watch, "main");
  const upgraded = new RegExp("libssl3 \\S+ → " + fixed.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  check(upgraded.test(history), "the host page shows the upgrade in the host's history");
  const logHref = await watch.getAttribute('a[href^="/jobs/"]', "href");
  res = await ctx.request.get(base + logHref);
  check(res.status() === 200 && (await res.text()).includes(`Setting up libssl3 (${fixed})`),
    `the host page links the executor's stored job log (${res.status()})`);
  // (a simulated host lists hundreds of packages: the screenshot is the view at the upgrade history)
  await watch.locator("section.card", { has: watch.locator("h2", { hasText: "Upgrade history" }) }).scrollIntoViewIfNeeded();
  await shot(watch, "06-host", false);

  check(errors.length === 0, `no console errors (CSP or script): ${errors.join(" | ")}`);
  console.log("DONE");
} finally {
  await browser.close();
}
process.exit(0);

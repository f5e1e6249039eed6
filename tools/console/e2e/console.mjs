// Real-browser test of the Patchfleet console, run by TestE2EConsole (e2e_test.go): headless
// Debian chromium driven by playwright-core, against a test bus whose query responders stand in
// for the services. Steps ("STEP <name>") ask the test to publish or check something on the bus.
import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { step, check, viewport, launchOptions, watchErrors } from "./browser.mjs";

const base = process.env.CONSOLE_URL;
const token = process.env.CONSOLE_TOKEN;
const shots = process.env.SCREENSHOTS;
const planHash = process.env.PLAN_HASH;
mkdirSync(shots, { recursive: true });

const profile = mkdtempSync(join(tmpdir(), "pf-console-chromium-"));
const context = await chromium.launchPersistentContext(profile, { ...launchOptions, viewport });
const cspViolations = [];
try {
  const page = context.pages()[0] || (await context.newPage());
  watchErrors(page, cspViolations);
  const shot = (name) => page.screenshot({ path: join(shots, name + ".png"), fullPage: true });

  // Without a session: pages send you to sign in, actions are refused.
  let res = await context.request.post(`${base}/rollouts/r-waiting/approve`, { form: { plan_hash: planHash, csrf: "x" }, maxRedirects: 0 });
  check(res.status() === 401, `approve without signing in is refused (${res.status()})`);
  await page.goto(`${base}/rollouts/r-running`);
  check(page.url().startsWith(`${base}/login`), "a page without a session leads to the sign-in page");
  await page.fill("#token", "wrong-token-wrong-token");
  await page.click("button[type=submit]");
  check((await page.textContent(".error")).includes("not valid"), "a wrong token is refused");
  await shot("01-login");

  // Sign in: back to the page asked for, then the overview.
  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${base}/rollouts/r-running`), page.click("button[type=submit]")]);
  await page.goto(`${base}/`);
  check((await page.textContent("#t-exposed")).trim() === "4", "the overview shows 4 exposed hosts");
  check(await page.evaluate(() => [...document.querySelectorAll("svg.chart rect.bar")].some((r) => Number(r.getAttribute("height")) > 0)),
    "the overview draws the exposure chart");
  await shot("02-overview");

  // Signed in but without the CSRF token: refused.
  res = await context.request.post(`${base}/rollouts/r-waiting/approve`, { form: { plan_hash: planHash }, maxRedirects: 0 });
  check(res.status() === 403, `approve without the CSRF token is refused (${res.status()})`);
  res = await context.request.post(`${base}/rollouts/r-waiting/approve`,
    { form: { plan_hash: planHash }, headers: { Origin: "https://evil.example", "Sec-Fetch-Site": "cross-site" }, maxRedirects: 0 });
  check(res.status() === 403, `a cross-site approve is refused (${res.status()})`);

  // A live rollout: web-2 turns green when UpgradeCompleted arrives, without a reload.
  await page.goto(`${base}/rollouts/r-running`);
  await page.waitForSelector("#r-live.on");
  await page.evaluate(() => { window.__sameDocument = true; });
  check(await page.getAttribute('tr[data-host="web-2"]', "data-state") === "dispatched", "web-2 starts as dispatched");
  await shot("03-rollout-before");
  await page.click('button[data-tail="web-2"]');
  await page.waitForSelector('#tail[data-following="web-2"]');
  await step("log web-2");
  await page.waitForFunction(() => document.querySelector("#tail").textContent.includes("Setting up libssl3"));
  check(true, "the live output tail shows web-2's job output");
  await step("upgrade-completed web-2");
  await page.waitForSelector('tr[data-host="web-2"][data-state="succeeded"] .badge.ok', { timeout: 15000 });
  check(await page.evaluate(() => window.__sameDocument === true), "web-2 turned green without a reload");
  check((await page.textContent("#r-summary")).includes("2 of 3 hosts done"), "the summary counts web-2");
  check((await page.textContent('tr[data-wave="1"] .w-text')).startsWith("1/2 done"), "wave 1's bar counts web-2");
  await shot("04-rollout-live");

  // Approve a rollout awaiting approval: the approval names the plan hash.
  await page.goto(`${base}/rollouts/r-waiting`);
  check((await page.inputValue('form[data-verb="approve"] input[name="plan_hash"]')) === planHash, "the approve form names the plan hash");
  await page.fill('form[data-verb="approve"] input[name="reason"]', "checked the plan in the console");
  await Promise.all([page.waitForURL(`${base}/rollouts/r-waiting`), page.click('form[data-verb="approve"] button[type=submit]')]);
  check((await page.textContent(".flash")).includes("You approved plan"), "the console confirms the approval");
  await step("approved");
  await shot("05-rollout-approved");

  // The other pages.
  await page.goto(`${base}/hosts/db-1`);
  check((await page.textContent("main")).includes("linux-image-6.1.0-26-amd64"), "the host page names the package that asked for a reboot");
  await page.fill('input[name="q"][aria-label="Search packages"]', "ginx");
  await Promise.all([page.waitForURL(/q=ginx/), page.press('input[name="q"][aria-label="Search packages"]', "Enter")]);
  check(await page.locator("table.compact tbody tr").count() === 1, "package search narrows the list");
  await shot("06-host");
  await page.goto(`${base}/advisories/DSA-5001-1`);
  check((await page.textContent("main")).includes("3.0.15-1~deb12u1"), "the advisory page shows the fixed version");
  await shot("07-advisory");
  await page.goto(`${base}/compliance?by=host`);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("text=Download CSV")]);
  check(download.suggestedFilename().endsWith(".csv"), "compliance downloads as CSV");
  await shot("08-compliance");
  await page.goto(`${base}/rollouts`);
  await shot("09-rollouts");

  check(cspViolations.length === 0, `no console errors (CSP or script): ${cspViolations.join(" | ")}`);
  console.log("DONE");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(0);

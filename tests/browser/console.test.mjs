// End-to-end test of the ops console in Debian's Chromium, driven by
// playwright-core. Run by tests/suite/console.rs (which starts the collector
// and a real agent, and posts hostile events), with:
//   CONSOLE_URL   https://localhost:PORT
//   OPERATOR_CERT OPERATOR_KEY   the operator's PEM files
//   SCREENSHOTS   where to save the screenshots
//   USER_DATA_DIR a fresh Chromium profile directory
// Exits non-zero, saying why, on the first failed expectation.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env("CONSOLE_URL");
const shots = env("SCREENSHOTS");
mkdirSync(shots, { recursive: true });

function expect(cond, what) {
  if (!cond) throw new Error(`expectation failed: ${what}`);
}

const context = await chromium.launchPersistentContext(env("USER_DATA_DIR"), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  // The test CA is not in the browser's store; the operator certificate is
  // what this test is about.
  ignoreHTTPSErrors: true,
  clientCertificates: [{
    origin: url,
    certPath: env("OPERATOR_CERT"),
    keyPath: env("OPERATOR_KEY"),
  }],
  viewport: { width: 1280, height: 800 },
});
let dialogs = 0;
const cspViolations = [];
try {
  const page = context.pages()[0] || await context.newPage();
  page.on("dialog", async (d) => { dialogs += 1; await d.dismiss(); });
  page.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });

  // Fleet.
  await page.goto(`${url}/fleet`);
  expect(await page.locator("h1").innerText() === "Fleet", "the fleet page opens");
  expect(await page.locator("#fleet tbody tr").count() >= 2, "the fleet lists both hosts");
  await page.screenshot({ path: join(shots, "fleet.png"), fullPage: true });

  // Filter by glob: only the real agent's host stays.
  await page.fill("input[name=q]", "web-*");
  await Promise.all([page.waitForURL(/q=web-/), page.click("form.filters button")]);
  const hosts = await page.locator("#fleet tbody td:first-child").allInnerTexts();
  expect(hosts.length === 1 && hosts[0] === "web-real", `filtered fleet: ${hosts}`);

  // The script works under the CSP: a status select submits its form.
  await page.goto(`${url}/fleet`);
  await Promise.all([page.waitForURL(/status=failing/), page.selectOption("select[name=status]", "failing")]);

  // Open a host.
  await page.goto(`${url}/fleet`);
  await Promise.all([page.waitForURL(/\/hosts\/evil-1$/), page.click("a[href='/hosts/evil-1']")]);
  expect((await page.locator("h1").innerText()) === "Host evil-1", "the host page opens");
  expect(await page.locator("table.rules").count() >= 1, "rules are listed by domain");
  await page.screenshot({ path: join(shots, "host.png"), fullPage: true });

  // Drift: follow an event to its host.
  await page.goto(`${url}/drift`);
  const link = page.locator("#drift tbody a[href='/hosts/evil-1']").first();
  await Promise.all([page.waitForURL(/\/hosts\/evil-1$/), link.click()]);
  await page.screenshot({ path: join(shots, "drift-to-host.png"), fullPage: true });

  // The injected markup did not run anywhere.
  for (const path of ["/fleet", "/drift", "/hosts/evil-1", "/compliance",
                      "/rules/%3Cscript%3Ewindow.pwned%3D1%3C%2Fscript%3E%22%27"]) {
    await page.goto(`${url}${path}`);
    const pwned = await page.evaluate(() => [typeof window.pwned, typeof window.pwnedFacts]);
    expect(pwned[0] === "undefined" && pwned[1] === "undefined", `${path}: injected script ran`);
  }
  expect(dialogs === 0, `${dialogs} dialogs fired`);
  expect(cspViolations.length === 0, `CSP violations: ${cspViolations.join("; ")}`);
  console.log("console browser test: ok");
} finally {
  await context.close();
}

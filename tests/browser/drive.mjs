// Drives Debian's Chromium (/usr/bin/chromium) with playwright-core for
// tests/api/browser.rs (issue 26). It only observes and reports: the Rust
// test decides. Input: the JSON in ACCTSTREAM_BROWSER (see browser.rs);
// output: one JSON object on stdout. Screenshots go to `screenshots`.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const input = JSON.parse(process.env.ACCTSTREAM_BROWSER || "{}");
const base = new URL(input.base);

const browser = await chromium.launch({
  executablePath: input.chromium || "/usr/bin/chromium",
  headless: true,
  // The machine's network is closed: no background traffic, no sandbox as root.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
mkdirSync(input.screenshots, { recursive: true });

// A page that records console errors, page errors and requests to other origins.
async function watchedPage() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const seen = { consoleErrors: [], foreignRequests: [], requests: 0 };
  page.on("console", (m) => { if (m.type() === "error") seen.consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => seen.consoleErrors.push(String(e)));
  page.on("request", (r) => {
    seen.requests++;
    const url = new URL(r.url());
    if (!["data:", "blob:"].includes(url.protocol) && url.origin !== base.origin) {
      seen.foreignRequests.push(r.url());
    }
  });
  return { context, page, seen };
}

async function dashboard(run) {
  const { context, page, seen } = await watchedPage();
  const views = [];
  await page.goto(new URL("/dashboard", base).href);
  await page.waitForSelector("#login");
  let consent = null;
  if (run.signIn) {
    // Sign in at the issuer: its consent page, the grants asked for there,
    // and back to the dashboard.
    await page.waitForSelector("#signin:not([hidden])", { timeout: 10000 });
    await page.click("#signin");
    await page.waitForSelector("form[action='/authorize'] #allow", { timeout: 10000 });
    consent = { url: page.url(), checked: await page.$$eval("input[type=checkbox]:checked", (c) => c.map((i) => i.name)) };
    await page.fill("input[name=subject]", run.signIn.subject);
    for (const grant of run.signIn.grants) await page.check(`input[name=${grant}]`);
    await page.screenshot({ path: `${input.screenshots}/${run.label}-consent.png` });
    await Promise.all([page.waitForURL((url) => url.origin === base.origin, { timeout: 10000 }), page.click("#allow")]);
  } else {
    await page.fill("#token", run.token);
    await page.click("#login button[type=submit]");
  }
  await page.waitForFunction(() => ["true", "error"].includes(document.body.dataset.ready), null, { timeout: 30000 });
  // Each view as a user opens a bookmark: its URL, loaded afresh (the
  // token stays in the tab's sessionStorage).
  const open = async (hash) => {
    await page.goto(new URL("/dashboard/#" + hash, base).href);
    await page.reload();
  };
  for (const view of input.views) {
    await open(view.hash);
    await page.waitForFunction(() => ["true", "error"].includes(document.body.dataset.ready), null, { timeout: 30000 });
    const result = await page.evaluate(() => ({
      ready: document.body.dataset.ready,
      status: document.getElementById("status").textContent,
      charts: [...document.querySelectorAll("section.chart")].map((s) => ({
        id: s.dataset.chart,
        source: s.dataset.source || null,
        big: s.querySelector(".big") ? Number(s.querySelector(".big").dataset.value) : null,
        canvas: s.querySelectorAll("canvas").length,
        rows: [...s.querySelectorAll("table.rows tbody tr")].map((tr) => ({ key: tr.dataset.key, value: Number(tr.dataset.value) })),
      })),
      hash: location.hash,
      html: document.documentElement.outerHTML,
      session: JSON.stringify(sessionStorage),
      url: location.href,
    }));
    await page.screenshot({ path: `${input.screenshots}/${run.label}-${view.name}.png`, fullPage: true });
    views.push({ name: view.name, ...result });
  }
  // The CSV link of the first chart downloads what it shows.
  let download = null;
  if (run.download) {
    await open(input.views[0].hash);
    await page.waitForFunction(() => document.body.dataset.ready === "true");
    const [file] = await Promise.all([page.waitForEvent("download"), page.click("section.chart a.csv")]);
    const path = `${input.screenshots}/${run.label}-download.csv`;
    await file.saveAs(path);
    download = { name: file.suggestedFilename(), path };
  }
  await context.close();
  return { label: run.label, views, download, consent, ...seen };
}

async function swagger(run) {
  const { context, page, seen } = await watchedPage();
  await page.goto(new URL("/swagger-ui/", base).href);
  await page.waitForSelector(".swagger-ui .information-container", { timeout: 30000 });
  // Authorize with the bearer token.
  await page.click(".btn.authorize");
  const form = page.locator(".modal-ux .auth-container").filter({ hasText: "bearerAuth" });
  await form.locator("input").first().fill(run.token);
  await form.locator("button.authorize").click();
  await page.click(".modal-ux .btn-done");
  const operations = [];
  for (const op of input.swaggerOperations) {
    const block = page.locator(`#operations-${op.tag}-${op.operationId}`);
    await block.locator(".opblock-summary").first().click();
    const execute = block.locator("button.execute");
    await execute.waitFor({ timeout: 10000 });
    const live = block.locator(".live-responses-table");
    // Up to five tries, cleared in between: the fastest counts (the other
    // tests share the machine's two cores with this browser).
    const tries = [];
    let status = null;
    for (let attempt = 0; attempt < 5; attempt++) {
      if (attempt > 0) {
        await block.locator("button.btn-clear").first().click();
        await live.first().waitFor({ state: "detached", timeout: 10000 });
      }
      const started = Date.now();
      await execute.click();
      const cell = block.locator(".live-responses-table tbody .response-col_status").first();
      await cell.waitFor({ timeout: 60000 });
      // Shown: the status and the body.
      await block.locator(".live-responses-table .response-col_description pre, .live-responses-table .response-col_description .microlight").first().waitFor({ timeout: 60000 });
      tries.push(Date.now() - started);
      status = (await cell.textContent()).trim();
      if (tries[tries.length - 1] < 2000) break;
    }
    const url = await block.locator(".request-url pre").first().textContent().catch(() => null);
    operations.push({ ...op, status, elapsedMs: Math.min(...tries), tries, url });
    await page.screenshot({ path: `${input.screenshots}/swagger-${op.operationId}.png` });
  }
  await context.close();
  return { operations, ...seen };
}

const output = { dashboards: [], swagger: null };
try {
  for (const run of input.dashboards || []) output.dashboards.push(await dashboard(run));
  if (input.swaggerOperations) output.swagger = await swagger({ token: input.swaggerToken });
} catch (error) {
  output.error = String(error && error.stack || error);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(output));

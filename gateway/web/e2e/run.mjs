// End-to-end test of the dashboard in headless Chromium (playwright-core driving the
// system's Chromium; no browser download), against a running gateway with `hive dev`'s
// seed cluster behind it.
//
//   node e2e/run.mjs BASE_URL [--screenshots DIR] [--stop-node NAME] [--settle SECONDS]
//
// Steps: bad input shows the API's field errors inline; a seed example submitted
// through the form runs, its stages completing live; a node is lost when its agent
// stops; the three views are saved as PNGs in DIR.
//
// Stopping an agent is the harness's job (tests/test_dashboard.py runs the cluster in
// its own process): this script prints `HIVE-E2E stop-node NAME` and waits for the
// dashboard to show NAME lost. Run by hand, stop that node's agent yourself when asked.
// Exits 0 on success; on failure prints the reason and saves failure.png in DIR.
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const base = args[0];
if (!base) {
  console.error("usage: node e2e/run.mjs BASE_URL [--screenshots DIR] [--stop-node NAME] [--settle SECONDS]");
  process.exit(2);
}
/** @param {string} name @param {string} fallback */
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
};
const shots = resolve(option("--screenshots", "e2e/out"));
const victim = option("--stop-node", "FORSTEINET");
// Seconds to keep load running before the performance screenshot (longer charts).
const settle = Number(option("--settle", "0"));
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const EXAMPLE = "REST API with Microservices";
mkdirSync(shots, { recursive: true });

/** @param {string} message */
const step = (message) => console.log(`e2e: ${message}`);

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Chromium as root in a container, on a machine with no route out: no sandbox, and
  // none of the background calls to Google that would fail.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 1000 }, colorScheme: "dark" });
/** @type {string[]} */
const consoleErrors = [];
page.on("console", (m) => {
  // The refused submissions above are expected 4xx answers, which Chromium logs.
  if (m.type() === "error" && !/status of 4\d\d/.test(m.text())) consoleErrors.push(m.text());
});
page.on("pageerror", (e) => consoleErrors.push(String(e)));
page.setDefaultTimeout(30_000);

try {
  await page.goto(new URL("#/workflows", base).toString());
  await page.locator('[data-testid="connection"][data-state="open"]').waitFor();
  step("dashboard loaded, live connection open");

  // --- bad input: the API's problem details, inline under their fields ---
  const form = page.getByRole("form", { name: "Submit a workflow" });
  await form.getByRole("button", { name: "Submit workflow" }).click();
  await page.getByTestId("error-name").waitFor();
  await page.getByTestId("error-requirements").waitFor();
  step(`empty form: name says "${await page.getByTestId("error-name").innerText()}"`);
  await form.getByLabel("Name").fill("Bad pipeline");
  await form.getByLabel("Requirements").fill("Anything.");
  await form.getByLabel("Pipeline").fill("no-such-pipeline");
  await form.getByRole("button", { name: "Submit workflow" }).click();
  const pipelineError = page.getByTestId("error-pipeline");
  await pipelineError.waitFor();
  const pipelineText = await pipelineError.innerText();
  if (!pipelineText.includes("unknown pipeline")) throw new Error(`pipeline error reads "${pipelineText}"`);
  step(`unknown pipeline: "${pipelineText}"`);

  // --- a seed example through the form, its stages completing live ---
  await form.getByLabel("Load an example").selectOption({ label: EXAMPLE });
  if ((await form.getByLabel("Name").inputValue()) !== EXAMPLE) throw new Error("the example did not load");
  await form.getByRole("button", { name: "Submit workflow" }).click();
  const detail = page.getByTestId("workflow-detail");
  await detail.waitFor();
  const id = decodeURIComponent(new URL(page.url()).hash.split("/")[2] ?? "");
  step(`submitted ${EXAMPLE} as ${id}`);
  // Record every progress value the page shows, without reloading it.
  const seen = new Set();
  const deadline = Date.now() + 90_000;
  for (;;) {
    const progress = await page.getByTestId("stages-progress").innerText();
    seen.add(progress);
    const state = await detail.getAttribute("data-state");
    if (state === "succeeded") break;
    if (state === "failed" || state === "cancelled") throw new Error(`workflow ${id} ${state}`);
    if (Date.now() > deadline) throw new Error(`workflow ${id} still ${state} after 90 s (seen ${[...seen].join(", ")})`);
    await page.waitForTimeout(50);
  }
  const rows = page.locator('[data-testid^="stage-"][data-state]');
  const count = await rows.count();
  for (let i = 0; i < count; i++) {
    const row = rows.nth(i);
    const name = (await row.getAttribute("data-testid"))?.replace(/^stage-/, "");
    if ((await row.getAttribute("data-state")) !== "succeeded") throw new Error(`stage ${name} not succeeded`);
    const node = (await page.getByTestId(`stage-${name}-node`).innerText()).trim();
    if (!node || node === "–") throw new Error(`stage ${name} shows no node`);
    step(`stage ${name} succeeded on ${node.split("\n")[0]}`);
  }
  if (seen.size < 2) throw new Error(`the stage progress never changed on screen (${[...seen].join(", ")})`);
  step(`progress seen live: ${[...seen].join(" → ")}`);
  await page.locator(".output .code").first().waitFor();
  // More load for the charts: the other two seed examples, through the API.
  await page.evaluate(async () => {
    for (const name of ["E-commerce Platform", "Code Optimization Project"]) {
      await fetch("api/distributed/workflows", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name, requirements: `${name}: the seed's example.`, language: "python", priority: "high" }),
      });
    }
  });
  await page.getByRole("tab", { name: "review" }).click();
  await page.screenshot({ path: `${shots}/dashboard-workflows.png` });
  step("saved dashboard-workflows.png");

  // --- cluster: a node lost when its agent stops ---
  await page.getByRole("link", { name: "Cluster" }).click();
  const card = page.getByTestId(`node-${victim}`);
  await card.locator('[data-state="healthy"]').first().waitFor();
  await page.waitForFunction(() => document.querySelectorAll('article[data-state="healthy"]').length >= 5);
  step("five nodes healthy");
  console.log(`HIVE-E2E stop-node ${victim}`);
  await page.locator(`[data-testid="node-${victim}"][data-state="lost"]`).waitFor({ timeout: 30_000 });
  await page.locator('[data-testid="node-event"]', { hasText: `${victim} lost` }).waitFor();
  step(`${victim} shown lost, live`);
  await page.screenshot({ path: `${shots}/dashboard-cluster.png` });
  step("saved dashboard-cluster.png");

  // --- performance: charts and the optimizer's plan ---
  await page.getByRole("link", { name: "Performance" }).click();
  await page.waitForFunction(() => document.querySelectorAll(".chart svg").length === 4, undefined, { timeout: 30_000 });
  for (let t = 0; t < settle; t += 2) {
    await page.evaluate(async () => {
      await fetch("api/distributed/workflows", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: "Load", requirements: "More load for the charts.", language: "go", pipeline: "quick" }),
      });
    });
    await page.waitForTimeout(2000);
  }
  await page.getByRole("button", { name: /Plan optimization/ }).click();
  await page.locator('[data-testid="optimize-plan"], .notice[role="status"]').first().waitFor();
  step("charts drawn, optimizer answered");
  await page.screenshot({ path: `${shots}/dashboard-performance.png` });
  step("saved dashboard-performance.png");

  if (consoleErrors.length) throw new Error(`console errors: ${consoleErrors.join(" | ")}`);
  console.log("HIVE-E2E ok");
} catch (err) {
  await page.screenshot({ path: `${shots}/failure.png` }).catch(() => undefined);
  console.error(`e2e failed: ${err instanceof Error ? err.message : String(err)}`);
  if (consoleErrors.length) console.error(`console errors: ${consoleErrors.join(" | ")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}

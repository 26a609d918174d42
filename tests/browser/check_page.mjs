// check_page.mjs: loads a page in Debian's headless Chromium (through playwright-core) and
// fails on anything a visitor would see go wrong: a console error, an uncaught exception,
// a request that fails, an image that does not load.
//   node tests/browser/check_page.mjs URL [SCREENSHOT.png]
// Prints one line per problem and "URL: ok (N images)" or exits 1.
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
if (!url) {
  console.error("usage: node check_page.mjs URL [SCREENSHOT.png]");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // This machine's network is closed: no background connections, no first-run chatter.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  await page.goto(url, { waitUntil: "load" });
  // Lazy images load when scrolled to: scroll through the page, then wait for all.
  await page.evaluate(async () => {
    for (let y = 0; y < document.body.scrollHeight; y += 600) {
      window.scrollTo(0, y);
      await new Promise((r) => setTimeout(r, 20));
    }
  });
  await page.waitForFunction(() => [...document.images].every((i) => i.complete), null, { timeout: 20000 });
  const broken = await page.evaluate(() =>
    [...document.images].filter((i) => i.naturalWidth === 0).map((i) => i.getAttribute("src")));
  for (const src of broken) problems.push(`image did not load: ${src}`);
  const count = await page.evaluate(() => document.images.length);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  for (const p of problems) console.log(p);
  if (problems.length === 0) console.log(`${url}: ok (${count} images)`);
} finally {
  await browser.close();
}
process.exit(problems.length ? 1 : 0);

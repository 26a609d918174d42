// serve_test.mjs: drives the page of a running `capsnet serve` in Debian's headless Chromium
// (through playwright-core) the way a visitor would: draws a digit with the mouse, waits for
// the capsules, moves a pose slider, resets, fetches a random test digit, shows the
// perturbation grid, and checks that a 360-px phone screen does not scroll sideways.
//   node tests/browser/serve_test.mjs URL [SCREENSHOT.png]
// The caller starts the server. Prints one line per check ("ok ..." or "FAIL ...") and exits
// 0 only if all pass. Any console error, page error, failed request or HTTP status >= 400 fails.
// With SCREENSHOT.png, saves the desktop page there and the phone page beside it (-phone.png).
import { chromium } from "playwright-core";

const [url, screenshot] = process.argv.slice(2);
if (!url) {
  console.error("usage: node serve_test.mjs URL [SCREENSHOT.png]");
  process.exit(2);
}

const WAIT_MS = 15000;    // the longest any step may take
const QUIET_MS = 300;     // no request in flight for this long: the page has settled
const SLIDER_PRESSES = 15;
const PHONE = { width: 360, height: 740 };

let failed = 0;
function report(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failed++;
}

// Runs one check: fn() answers a description of what it saw, or throws with what went wrong.
async function check(name, fn) {
  try {
    const detail = await fn();
    report(true, detail ? `${name}: ${detail}` : name);
    return true;
  } catch (e) {
    report(false, `${name}: ${e.message.split("\n")[0]}`);
    return false;
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // This machine's network is closed: no background connections, no first-run chatter.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

// A page that records everything a visitor would see go wrong, and counts requests in flight.
async function openPage(viewport) {
  const page = await browser.newPage({ viewport });
  page.problems = [];
  page.inFlight = 0;
  page.lastNetwork = Date.now();
  page.on("console", (m) => { if (m.type() === "error") page.problems.push(`console error: ${m.text()}`); });
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => page.problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
  page.on("response", (r) => { if (r.status() >= 400) page.problems.push(`HTTP ${r.status()}: ${r.url()}`); });
  page.on("request", () => { page.inFlight++; page.lastNetwork = Date.now(); });
  const done = () => { page.inFlight--; page.lastNetwork = Date.now(); };
  page.on("requestfinished", done);
  page.on("requestfailed", done);
  await page.goto(url, { waitUntil: "load" });
  await page.waitForSelector('body[data-ready="1"]', { timeout: WAIT_MS });
  return page;
}

// Waits until no request has been in flight for QUIET_MS: the latest answer is drawn.
async function settle(page) {
  const start = Date.now();
  while (page.inFlight > 0 || Date.now() - page.lastNetwork < QUIET_MS) {
    if (Date.now() - start > WAIT_MS) throw new Error(`requests still in flight after ${WAIT_MS} ms`);
    await page.waitForTimeout(50);
  }
}

// A "7": a bar along the top, then a slanted stroke down, in one mouse stroke.
async function drawSeven(page) {
  const box = await page.locator("#pad").boundingBox();
  const at = (fx, fy) => [box.x + fx * box.width, box.y + fy * box.height];
  await page.mouse.move(...at(0.28, 0.22));
  await page.mouse.down();
  await page.mouse.move(...at(0.72, 0.22), { steps: 8 });
  await page.mouse.move(...at(0.45, 0.82), { steps: 10 });
  await page.mouse.up();
}

const updates = (page) => page.$eval("#recon", (c) => Number(c.dataset.updates));
const reconImage = (page) => page.$eval("#recon", (c) => c.toDataURL());

// Waits until #predicted holds a class and every one of the C bars a length.
async function waitForCapsules(page, C) {
  await page.waitForFunction((C) => {
    const bars = [...document.querySelectorAll("#bars [data-class]")];
    return /^\d+$/.test(document.getElementById("predicted").textContent.trim()) &&
           bars.length === C && bars.every((b) => b.dataset.length !== undefined &&
                                                  Number.isFinite(Number(b.dataset.length)));
  }, C, { timeout: WAIT_MS });
}

const overflow = (page) => page.evaluate(() => document.documentElement.scrollWidth);

let info = null;
try {
  // ---- Desktop --------------------------------------------------------------------------
  let page = null;
  const steps = [
    ["page ready", async () => {
      page = await openPage({ width: 1280, height: 900 });
      info = await page.evaluate(async () => (await fetch("/api/info")).json());
      return `model ${info.model}, ${info.classes} classes, ${info.test_images} test images`;
    }],
    ["draw a 7 and classify", async () => {
      await drawSeven(page);
      await waitForCapsules(page, info.classes);
      await settle(page);
      const cls = await page.textContent("#predicted");
      const lengths = await page.$$eval("#bars [data-class]", (bs) => bs.map((b) => Number(b.dataset.length)));
      if (lengths.some((v) => v < 0 || v > 1)) throw new Error(`a length outside [0, 1]: ${lengths}`);
      const hi = await page.$$eval("#bars .predicted", (bs) => bs.map((b) => b.dataset.class));
      if (hi.length !== 1 || hi[0] !== cls.trim()) throw new Error(`highlighted bars ${hi}, predicted ${cls}`);
      const ink = await page.$eval("#input", (c) =>
        c.getContext("2d").getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 === 0 && v > 0));
      if (!ink) throw new Error("the network-input view is black");
      return `predicted ${cls}, ${lengths.length} bars`;
    }],
    ["slider dim0 changes the reconstruction", async () => {
      // One step, then the rest: the two decoded images must differ from each other, so a
      // server that ignores the capsule cannot pass by differing from /api/classify's image.
      const before = await reconImage(page), n0 = await updates(page);
      await page.focus("#dim0");
      await page.keyboard.press("ArrowRight");
      await page.waitForFunction((n0) => Number(document.getElementById("recon").dataset.updates) > n0,
                                 n0, { timeout: WAIT_MS });
      await settle(page);
      const oneStep = await reconImage(page), n1 = await updates(page);
      for (let i = 1; i < SLIDER_PRESSES; i++) await page.keyboard.press("ArrowRight");
      await page.waitForFunction((n1) => Number(document.getElementById("recon").dataset.updates) > n1,
                                 n1, { timeout: WAIT_MS });
      await settle(page);
      const value = Number(await page.inputValue("#dim0"));
      const want = Math.min(info.slider_range, SLIDER_PRESSES * 0.01);
      if (Math.abs(value - want) > 1e-6) throw new Error(`dim0 is ${value}, expected ${want}`);
      const after = await reconImage(page);
      if (after === before) throw new Error("the reconstruction pixels did not change");
      if (after === oneStep) throw new Error(`the reconstruction is the same at offsets 0.01 and ${value}`);
      return `offset ${value}, ${(await updates(page)) - n0} redraws`;
    }],
    ["reset sets the offsets back to 0", async () => {
      const n0 = await updates(page);
      await page.click("#reset");
      await settle(page);
      const values = await page.$$eval("#sliders input[type=range]", (is) => is.map((i) => Number(i.value)));
      if (values.length !== info.digit_dim) throw new Error(`${values.length} sliders, expected ${info.digit_dim}`);
      if (values.some((v) => v !== 0)) throw new Error(`slider values ${values}`);
      if ((await updates(page)) <= n0) throw new Error("#recon was not redrawn");
      return `${values.length} sliders at 0`;
    }],
    ["random test digit", async () => {
      if (!(info.test_images > 0)) {
        if (await page.isVisible("#random")) throw new Error("the server has no test images, yet #random shows");
        return "skipped: the server has no test images";
      }
      const n0 = await updates(page);
      await page.click("#random");
      await page.waitForFunction((n0) => /test image \d+, an? \d+/.test(document.getElementById("source").textContent) &&
                                 Number(document.getElementById("recon").dataset.updates) > n0,
                                 n0, { timeout: WAIT_MS });
      await settle(page);
      await waitForCapsules(page, info.classes);
      return `${await page.textContent("#source")}, predicted ${await page.textContent("#predicted")}`;
    }],
    ["perturbation grid", async () => {
      await page.click("#perturb-button");
      await page.waitForFunction(() => {
        const c = document.getElementById("perturb");
        if (c.hidden || c.width === 0 || c.height === 0) return false;
        // Tiles are gray (r = g = b); the background, the frame and the labels are not.
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 16 && d[i] === d[i + 1] && d[i] === d[i + 2]) return true;
        return false;  // no digit pixels yet
      }, null, { timeout: WAIT_MS });
      await settle(page);
      const size = await page.$eval("#perturb", (c) => `${c.width}x${c.height}`);
      return `drawn, ${size} pixels`;
    }],
    ["desktop page fits its width", async () => {
      const w = await overflow(page);
      if (w > 1280 + 1) throw new Error(`scrollWidth ${w} > 1280`);
      if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
      return `scrollWidth ${w}${screenshot ? `, screenshot ${screenshot}` : ""}`;
    }],
  ];
  for (const [name, fn] of steps) {
    const ok = await check(name, async () => {
      const detail = await fn();
      // The page shows API errors in its status line rather than throwing.
      const error = await page.$eval("#status", (s) => s.classList.contains("error") ? s.textContent : "");
      if (error) throw new Error(`status line shows an error: ${error}`);
      return detail;
    });
    if (!ok) break;  // later steps build on earlier ones
  }
  if (page) await check("desktop: no console errors, page errors or failed requests", async () => {
    if (page.problems.length) throw new Error(page.problems.join("; "));
  });

  // ---- Phone: nothing may be wider than the screen, the grid included ----------------------
  let phone = null;
  await check(`phone ${PHONE.width}x${PHONE.height} does not overflow`, async () => {
    phone = await openPage(PHONE);
    await drawSeven(phone);
    await waitForCapsules(phone, info ? info.classes : 10);
    await settle(phone);
    await phone.click("#perturb-button");
    await phone.waitForFunction(() => !document.getElementById("perturb").hidden, null, { timeout: WAIT_MS });
    await settle(phone);
    const w = await overflow(phone);
    if (w > PHONE.width + 1) throw new Error(`scrollWidth ${w} > ${PHONE.width}`);
    if (screenshot) {
      await phone.screenshot({ path: screenshot.replace(/(\.png)?$/i, "-phone.png"), fullPage: true });
    }
    return `scrollWidth ${w}`;
  });
  if (phone) await check("phone: no console errors, page errors or failed requests", async () => {
    if (phone.problems.length) throw new Error(phone.problems.join("; "));
  });
} finally {
  await browser.close();
}
console.log(failed ? `${failed} check(s) failed` : "all checks passed");
process.exit(failed ? 1 : 0);

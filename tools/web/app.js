// app.js: the capsule explorer's behaviour. Draw a digit on the pad, turn it into an MNIST-like
// input, ask the server for its digit capsules (POST /api/classify), show the capsule lengths
// and the reconstruction, let sixteen sliders offset the predicted capsule (POST /api/decode),
// fetch test digits (GET /api/test/<i>) and the paper's Figure 4 grid (POST /api/perturb).
// Sizes come from GET /api/info. Legend: S = image side (28), K = image channels (1 gray, 3
// colour: [K][S][S] planes of red, green, blue), N = K*S*S values (784), C = classes (10),
// D = digit capsule dimensions (16), R = slider range (0.25). The pad is for gray 28x28 models
// (MNIST-like digits) only; other models are explored through their test images. Classes are
// shown by name where the model has names (/api/info's class_names).
// Hooks for tests: body[data-ready="1"] once /api/info is in; #recon's data-updates counts its
// redraws; #predicted holds the last predicted class.
"use strict";

const MNIST_BOX = 20 / 28;      // MNIST scales a digit's box to 20 px of the 28-px image
const PAD_CSS = 280;            // the pad's size in CSS pixels
const PAD_STROKE = 1 / 12;      // pen width as a fraction of the pad: MNIST-like strokes
const INK = 16;                 // a pad pixel with more red than this counts as ink (0..255)
const LIVE_MS = 200;            // classify at most this often while a stroke is drawn
const SLIDER_STEP = 0.01;
const PERTURB_STEPS = 11;       // columns of the grid, the paper's -0.25..0.25 by 0.05
const GRID_ZOOM = 2;            // CSS px per image pixel in the grid, at most (less on a phone)
const GRID_GAP = 4;             // CSS px between tiles
const GRID_LABEL_W = 46;        // CSS px for the "dim k" labels
const GRID_HEAD_H = 20;         // CSS px for the delta labels

const $ = (id) => document.getElementById(id);
const pad = $("pad"), padCtx = pad.getContext("2d", { willReadFrequently: true });
const recon = $("recon"), predicted = $("predicted"), statusLine = $("status");

// Everything the page knows; set by /api/info, then by each classification.
const state = {
  info: null,        // the /api/info answer
  fromPad: true,     // classify the pad (true) or testPixels (false)
  testPixels: null,  // [N] the last test image, used until the pad is drawn on
  input: null,       // [N] the input last classified
  cls: -1,           // predicted class, -1 before the first classification
  capsule: null,     // [D] the predicted capsule
  reconstruction: null, // [N] the decoder's image of the unchanged capsule
  // Answers to requests sent before these changed are dropped:
  inputGen: 0,       // bumped by Clear (classify, perturb)
  capsuleGen: 0,     // bumped by each classification, Reset and Clear (decode)
};

function setStatus(text, isError) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", !!isError);
}

// One JSON request; answers the parsed body, or null after putting the error in the status line.
async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  try {
    const res = await fetch(path, init);
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }  // an error page that is not JSON
    if (!res.ok || data === null) {
      const why = data && data.error ? data.error : `HTTP ${res.status} ${res.statusText}`;
      setStatus(`${path}: ${why}`, true);
      return null;
    }
    if (statusLine.classList.contains("error")) setStatus("");  // the error is over
    return data;
  } catch (e) {  // no answer at all: the server stopped, the network is down
    setStatus(`${path}: ${e.message}`, true);
    return null;
  }
}

// Runs task() with at most one call in flight. A trigger during a run asks for one more run
// after it, which reads the state as it is then: the latest state always gets an answer, and
// a slow server is never sent a queue of stale requests. task() must not throw.
function latestWins(task) {
  let running = false, again = false;
  return async function trigger() {
    if (running) { again = true; return; }
    running = true;
    try {
      do { again = false; await task(); } while (again);
    } finally {
      running = false;  // a bug in task() must not stop all later requests
    }
  };
}

// A number with 2 decimals and a real minus sign ("−0.00" never shows); plus: "+" before
// positive numbers too.
function signed(v, plus) {
  const r = Math.round(v * 100) / 100;
  return `${r < 0 ? "−" : plus && r > 0 ? "+" : ""}${Math.abs(r).toFixed(2)}`;
}

const isNumbers = (a, n) => Array.isArray(a) && a.length === n && a.every(Number.isFinite);
// Pixels go out with 4 decimals: finer than 1/255, and a third of the request.
const round4 = (v) => Math.round(v * 1e4) / 1e4;

// ---- Drawing images --------------------------------------------------------------------

// The model's channels: 3 draws [3][S][S] planes in colour, anything else gray from plane 0.
const channels = () => (state.info && state.info.channels === 3 ? 3 : 1);
const imageValues = () => channels() * state.info.image_size ** 2;

// Class j as the page writes it: its name where the model has names, else its number.
function className(j) {
  const names = state.info && state.info.class_names;
  return Array.isArray(names) && typeof names[j] === "string" ? names[j] : String(j);
}
const hasNames = () => !!(state.info && Array.isArray(state.info.class_names));

// Paints values (0..1, [K][S*S] planes, row-major) into a canvas of S x S pixels, in colour
// when K = 3, else gray; null paints black.
function paintImage(canvas, pixels, K) {
  const ctx = canvas.getContext("2d");
  const n = canvas.width * canvas.height, plane = K === 3 ? n : 0;
  const img = ctx.createImageData(canvas.width, canvas.height);
  const byte = (v) => Math.round(255 * Math.min(1, Math.max(0, v)));
  for (let i = 0; i < n; i++) {
    img.data[4 * i] = pixels ? byte(pixels[i]) : 0;
    img.data[4 * i + 1] = pixels ? byte(pixels[plane + i]) : 0;
    img.data[4 * i + 2] = pixels ? byte(pixels[2 * plane + i]) : 0;
    img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

// Gray values ([S*S]): the pad's input.
const paintGray = (canvas, pixels) => paintImage(canvas, pixels, 1);

// Every redraw of #recon goes through here, so data-updates counts them.
function paintRecon(pixels) {
  paintImage(recon, pixels, channels());
  recon.dataset.updates = String(Number(recon.dataset.updates) + 1);
}

function clearPad() {
  padCtx.fillStyle = "#000";
  padCtx.fillRect(0, 0, pad.width, pad.height);
}

// ---- The pad -----------------------------------------------------------------------------

let stroke = null;      // the last point of the stroke being drawn, in pad pixels
let lastLive = 0;       // when the last classification during a stroke was asked for

function padPoint(e) {
  const r = pad.getBoundingClientRect();
  return { x: (e.clientX - r.left) * pad.width / r.width, y: (e.clientY - r.top) * pad.height / r.height };
}

function inkTo(p) {
  padCtx.beginPath();
  padCtx.moveTo(stroke.x, stroke.y);
  padCtx.lineTo(p.x, p.y);
  padCtx.stroke();
  stroke = p;
}

pad.addEventListener("pointerdown", (e) => {
  if (e.pointerType === "mouse" && e.button !== 0) return;
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  padCtx.strokeStyle = "#fff";
  padCtx.lineWidth = pad.width * PAD_STROKE;
  padCtx.lineCap = padCtx.lineJoin = "round";
  stroke = padPoint(e);
  padCtx.fillStyle = "#fff";  // a dot, so that a click or a tap leaves ink too
  padCtx.beginPath();
  padCtx.arc(stroke.x, stroke.y, padCtx.lineWidth / 2, 0, 2 * Math.PI);
  padCtx.fill();
  state.fromPad = true;
  $("source").textContent = "your drawing";
});

pad.addEventListener("pointermove", (e) => {
  if (!stroke) return;
  // Coalesced events keep fast strokes smooth where the browser offers them.
  const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
  for (const c of events.length ? events : [e]) inkTo(padPoint(c));
  if (e.timeStamp - lastLive >= LIVE_MS) {
    lastLive = e.timeStamp;
    classify();
  }
});

function endStroke() {
  if (!stroke) return;
  stroke = null;
  classify();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// The pad as the network's input, made as MNIST was: the ink's bounding box scaled (aspect
// kept, antialiased) so its longer side is 20 px of 28, then placed in a black 28x28 image so
// that the centre of mass of the ink lands on the image's centre. Answers [N] gray values in
// 0..1, or null when the pad is empty.
function padToInput() {
  const S = state.info.image_size, box = Math.round(S * MNIST_BOX);
  const w = pad.width, h = pad.height, rgba = padCtx.getImageData(0, 0, w, h).data;
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (rgba[4 * (y * w + x)] > INK) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  if (x1 < 0) return null;
  const bw = x1 - x0 + 1, bh = y1 - y0 + 1, scale = box / Math.max(bw, bh);
  const dw = Math.max(1, Math.round(bw * scale)), dh = Math.max(1, Math.round(bh * scale));

  // The browser's smoothed downscale does the antialiasing.
  const small = document.createElement("canvas");
  small.width = dw;
  small.height = dh;
  const sctx = small.getContext("2d", { willReadFrequently: true });
  sctx.imageSmoothingEnabled = true;
  sctx.imageSmoothingQuality = "high";
  sctx.drawImage(pad, x0, y0, bw, bh, 0, 0, dw, dh);
  const g = sctx.getImageData(0, 0, dw, dh).data;

  // Centre of mass of the small image, pixel centres at (x + 0.5, y + 0.5).
  let mass = 0, mx = 0, my = 0;
  for (let y = 0; y < dh; y++) {
    for (let x = 0; x < dw; x++) {
      const v = g[4 * (y * dw + x)];
      mass += v;
      mx += v * (x + 0.5);
      my += v * (y + 0.5);
    }
  }
  if (mass === 0) return null;
  // Shift so the centre of mass sits at (S/2, S/2); clamp so the whole box stays inside.
  const clamp = (v, hi) => Math.min(hi, Math.max(0, v));
  const ox = clamp(Math.round(S / 2 - mx / mass), S - dw);
  const oy = clamp(Math.round(S / 2 - my / mass), S - dh);
  const pixels = new Array(S * S).fill(0);
  for (let y = 0; y < dh; y++) {
    for (let x = 0; x < dw; x++) pixels[(y + oy) * S + x + ox] = g[4 * (y * dw + x)] / 255;
  }
  return pixels;
}

// ---- Classification ----------------------------------------------------------------------

const classify = latestWins(async () => {
  if (!state.info) return;  // drawn on before /api/info answered
  const pixels = state.fromPad ? padToInput() : state.testPixels;
  if (!pixels) return;
  const { classes: C, digit_dim: D } = state.info, N = imageValues();
  const gen = state.inputGen;
  paintImage($("input"), pixels, channels());
  const r = await api("/api/classify", { pixels: pixels.map(round4) });
  if (!r || gen !== state.inputGen) return;  // failed, or Clear was pressed meanwhile
  if (!Number.isInteger(r.class) || r.class < 0 || r.class >= C || !isNumbers(r.lengths, C) ||
      !Array.isArray(r.capsules) || r.capsules.length !== C || !isNumbers(r.capsules[r.class], D) ||
      !isNumbers(r.reconstruction, N)) {
    setStatus("/api/classify: the answer does not have the expected shape", true);
    return;
  }
  state.capsuleGen++;
  state.input = pixels;
  state.cls = r.class;
  state.capsule = r.capsules[r.class];
  state.reconstruction = r.reconstruction;
  predicted.textContent = String(r.class);
  $("predicted-name").textContent = hasNames() ? className(r.class) : "";
  showLengths(r.lengths, r.class);
  resetSliders();
  paintRecon(r.reconstruction);
  $("reset").disabled = false;
  $("perturb-button").disabled = false;
  const named = hasNames() ? ` (${className(r.class)})` : "";
  setStatus(`Predicted ${r.class}${named} (capsule length ${r.lengths[r.class].toFixed(3)}).`);
});

// One bar per class, made once /api/info says how many.
function makeBars(C) {
  const bars = $("bars");
  // Names need a wider first column than numbers: as wide as the longest, up to 14
  // characters (longer ones are cut, with the whole name in the tooltip).
  let widest = 0;
  for (let j = 0; j < C; j++) widest = Math.max(widest, className(j).length);
  const first = hasNames() ? `${Math.min(widest, 14) + 1}ch` : "1.2rem";
  for (let j = 0; j < C; j++) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.gridTemplateColumns = `${first} minmax(0, 1fr) 3rem`;
    bar.dataset.class = String(j);
    bar.innerHTML = '<span class="class"></span><span class="track"><span class="fill"></span></span>' +
                    '<span class="value">–</span>';
    bar.querySelector(".class").textContent = className(j);
    bar.querySelector(".class").title = hasNames() ? `class ${j}: ${className(j)}` : `class ${j}`;
    bars.appendChild(bar);
  }
}

// lengths: [C] in 0..1, or null to empty the bars.
function showLengths(lengths, cls) {
  for (const bar of $("bars").children) {
    const j = Number(bar.dataset.class), v = lengths ? lengths[j] : null;
    if (v === null) delete bar.dataset.length;
    else bar.dataset.length = String(v);
    bar.classList.toggle("predicted", j === cls);
    bar.querySelector(".fill").style.width = `${100 * Math.min(1, Math.max(0, v || 0))}%`;
    bar.querySelector(".value").textContent = v === null ? "–" : v.toFixed(3);
    const label = hasNames() ? `class ${j} (${className(j)})` : `class ${j}`;
    bar.setAttribute("aria-label", v === null ? label : `${label}: length ${v.toFixed(3)}`);
  }
}

// ---- The sliders -------------------------------------------------------------------------

function makeSliders(D, R) {
  const box = $("sliders");
  for (let k = 0; k < D; k++) {
    const row = document.createElement("div");
    row.className = "dim";
    row.innerHTML = `<label for="dim${k}">dim ${k}</label>` +
      `<input type="range" id="dim${k}" min="${-R}" max="${R}" step="${SLIDER_STEP}" value="0" disabled>` +
      `<output for="dim${k}" id="dim${k}-value">–</output>`;
    const input = row.querySelector("input");
    input.setAttribute("aria-label", `offset of capsule dimension ${k}`);
    input.addEventListener("input", () => { showSliderValue(k); decode(); });
    box.appendChild(row);
  }
}

const offset = (k) => Number($(`dim${k}`).value);

// The label shows the capsule's value with the offset added, and the offset.
function showSliderValue(k) {
  const out = $(`dim${k}-value`), d = offset(k);
  if (!state.capsule) { out.textContent = "–"; return; }
  const value = signed(state.capsule[k] + d, false), change = signed(d, true);
  out.innerHTML = `${value} <small>(${change})</small>`;
  $(`dim${k}`).setAttribute("aria-valuetext", `offset ${change}, value ${value}`);
}

// Sets every offset to 0 (sliders usable only once there is a capsule).
function resetSliders() {
  for (let k = 0; k < state.info.digit_dim; k++) {
    const input = $(`dim${k}`);
    input.value = "0";
    input.disabled = !state.capsule;
    showSliderValue(k);
  }
}

const decode = latestWins(async () => {
  if (!state.capsule) return;
  const gen = state.capsuleGen;
  const capsule = state.capsule.map((v, k) => v + offset(k));
  const r = await api("/api/decode", { class: state.cls, capsule });
  if (!r || gen !== state.capsuleGen) return;  // failed, or the capsule or offsets were replaced
  if (!isNumbers(r.reconstruction, imageValues())) {
    setStatus("/api/decode: the answer does not have the expected shape", true);
    return;
  }
  paintRecon(r.reconstruction);
});

$("reset").addEventListener("click", () => {
  if (!state.capsule) return;
  state.capsuleGen++;  // drops a decode still in flight
  resetSliders();
  paintRecon(state.reconstruction);  // the unchanged capsule's image, already known
  setStatus("Offsets reset.");
});

// ---- Buttons: clear, random test digit, perturbation grid ----------------------------------

$("clear").addEventListener("click", () => {
  state.inputGen++;
  state.capsuleGen++;
  state.fromPad = true;
  state.testPixels = state.input = state.capsule = state.reconstruction = null;
  state.cls = -1;
  clearPad();
  paintGray($("input"), null);
  paintRecon(null);
  predicted.textContent = "–";
  $("predicted-name").textContent = "";
  showLengths(null, -1);
  resetSliders();
  $("reset").disabled = $("perturb-button").disabled = true;
  $("perturb").hidden = true;
  $("source").textContent = "";
  setStatus("Cleared.");
});

$("random").addEventListener("click", async () => {
  const { test_images: T, image_size: S } = state.info;
  const index = Math.floor(Math.random() * T);
  setStatus(`Loading test image ${index}…`);
  const r = await api(`/api/test/${index}`);
  if (!r) return;
  if (!isNumbers(r.pixels, imageValues())) {
    setStatus("/api/test: the answer does not have the expected shape", true);
    return;
  }
  // The pad (gray models) shows the test image scaled up; the network gets its own pixels.
  const small = document.createElement("canvas");
  small.width = small.height = S;
  paintImage(small, r.pixels, channels());
  padCtx.imageSmoothingEnabled = true;
  padCtx.drawImage(small, 0, 0, pad.width, pad.height);
  state.testPixels = r.pixels;
  state.fromPad = false;
  const named = hasNames() ? ` (${className(r.label)})` : "";
  $("source").textContent = `test image ${r.index}, ${r.label === 8 ? "an" : "a"} ${r.label}${named}`;
  classify();
});

$("perturb-button").addEventListener("click", async () => {
  if (!state.input) return;
  const button = $("perturb-button");
  button.disabled = true;
  setStatus("Computing the perturbation grid…");
  const gen = state.inputGen;
  const r = await api("/api/perturb",
                      { pixels: state.input.map(round4), range: state.info.slider_range, steps: PERTURB_STEPS });
  button.disabled = !state.input;
  if (!r || gen !== state.inputGen) return;  // failed, or Clear was pressed meanwhile
  const bytes = Number.isInteger(r.rows) && Number.isInteger(r.cols) && Number.isInteger(r.size) &&
                typeof r.images === "string" ? decodeBase64(r.images) : null;
  const K = r.channels === undefined ? 1 : r.channels;
  if (!bytes || !Number.isInteger(K) || K < 1 ||
      bytes.length !== r.rows * r.cols * K * r.size * r.size || !isNumbers(r.deltas, r.cols)) {
    setStatus("/api/perturb: the answer does not have the expected shape", true);
    return;
  }
  lastGrid = { r, bytes };
  drawGrid(r, bytes);
  const named = hasNames() ? ` (${className(r.class)})` : "";
  setStatus(`Perturbation grid of class ${r.class}${named}: ${r.rows} dimensions x ${r.cols} offsets.`);
});

function decodeBase64(text) {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch (e) {
    return null;  // not base64
  }
}

let lastGrid = null;  // the last /api/perturb answer and its bytes, redrawn when the window resizes

// The grid: tile (row r, col c) is the image at bytes[(r*cols + c)*K*size*size], K planes of
// size x size (K = 3: red, green, blue; else gray from the first),
// upscaled up to GRID_ZOOM times without smoothing, with "dim k" and delta labels and the
// middle column framed. Tiles shrink to fit the panel, so the labels keep their size on a
// phone; drawn at the screen's pixel ratio so text and pixels stay sharp.
function drawGrid(r, bytes) {
  const { rows, cols, size } = r, canvas = $("perturb");
  const K = r.channels === undefined ? 1 : r.channels, plane = K === 3 ? size * size : 0;
  canvas.hidden = false;
  const room = canvas.parentElement.clientWidth - 2 * parseFloat(getComputedStyle(canvas.parentElement).paddingLeft);
  const step = Math.min(size * GRID_ZOOM + GRID_GAP, Math.floor((room - GRID_LABEL_W) / cols));
  const tile = step - GRID_GAP;
  const cssW = GRID_LABEL_W + cols * step, cssH = GRID_HEAD_H + rows * step;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  canvas.style.width = `${cssW}px`;

  // All tiles at 1:1 in one image, then copied scaled tile by tile.
  const sheet = document.createElement("canvas");
  sheet.width = cols * size;
  sheet.height = rows * size;
  const sctx = sheet.getContext("2d"), img = sctx.createImageData(sheet.width, sheet.height);
  for (let t = 0; t < rows * cols; t++) {
    const tr = Math.floor(t / cols), tc = t % cols;
    for (let i = 0; i < size * size; i++) {
      const p = 4 * ((tr * size + Math.floor(i / size)) * sheet.width + tc * size + (i % size));
      const at = t * K * size * size + i;
      img.data[p] = bytes[at];
      img.data[p + 1] = bytes[at + plane];
      img.data[p + 2] = bytes[at + 2 * plane];
      img.data[p + 3] = 255;
    }
  }
  sctx.putImageData(img, 0, 0);

  const css = getComputedStyle(document.documentElement), color = (name) => css.getPropertyValue(name).trim();
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = color("--panel");
  ctx.fillRect(0, 0, cssW, cssH);
  const mid = Math.floor(cols / 2);
  ctx.fillStyle = color("--accent");
  ctx.fillRect(GRID_LABEL_W + mid * step - GRID_GAP / 2, GRID_HEAD_H - GRID_GAP / 2, step, rows * step);
  ctx.imageSmoothingEnabled = tile * dpr < size;  // crisp pixels, unless tiles are shrunk
  ctx.textBaseline = "middle";
  ctx.textAlign = "center";
  ctx.font = "11px system-ui, sans-serif";
  // Narrow columns (a phone) get a label every other column, always one on the middle.
  const every = ctx.measureText("−0.25").width > step - 2 ? 2 : 1;
  for (let c = mid % every; c < cols; c += every) {
    ctx.fillStyle = c === mid ? color("--accent") : color("--muted");
    ctx.fillText(signed(r.deltas[c], true), GRID_LABEL_W + c * step + tile / 2, GRID_HEAD_H / 2 - 2);
  }
  ctx.textAlign = "left";
  ctx.fillStyle = color("--muted");
  for (let k = 0; k < rows; k++) {
    const y = GRID_HEAD_H + k * step;
    ctx.fillText(`dim ${k}`, 4, y + tile / 2);
    for (let c = 0; c < cols; c++) {
      ctx.drawImage(sheet, c * size, k * size, size, size, GRID_LABEL_W + c * step, y, tile, tile);
    }
  }
}

window.addEventListener("resize", () => {
  if (lastGrid && !$("perturb").hidden) drawGrid(lastGrid.r, lastGrid.bytes);
});

// ---- Start -------------------------------------------------------------------------------

async function start() {
  const dpr = window.devicePixelRatio || 1;
  pad.width = pad.height = Math.round(PAD_CSS * dpr);  // sharp strokes on high-DPI screens
  clearPad();

  const info = await api("/api/info");
  if (!info) return;
  const { classes: C, image_size: S, digit_dim: D, slider_range: R, test_images: T } = info;
  const K = info.channels === undefined ? 1 : info.channels;
  if (![C, S, D, T, K].every((v) => Number.isInteger(v) && v >= 0) || !(C > 0 && S > 0 && D > 0 && K > 0) ||
      !(Number.isFinite(R) && R > 0) ||
      !(info.class_names == null || (Array.isArray(info.class_names) && info.class_names.length === C))) {
    setStatus("/api/info: the answer does not have the expected shape", true);
    return;
  }
  state.info = info;
  const kind = K === 3 ? "colour" : K === 1 ? "gray" : `${K}-channel`;
  $("model").textContent = `${info.model}: ${C} classes, ${S}x${S} ${kind} images, ${D}-dimensional capsules`;
  // Drawing makes a gray MNIST-like 28x28 digit; any other model is explored by test images.
  const drawable = K === 1 && S === 28;
  pad.hidden = !drawable;
  $("clear").hidden = !drawable;
  $("draw-note").hidden = !drawable;
  $("no-draw").hidden = drawable;
  if (!drawable) {
    $("no-draw").textContent = `This model takes ${S}x${S} ${kind} images: drawing is for ` +
      `gray 28x28 digit models only. ${T > 0 ? "Pick a random test image instead." :
      "Start the server with --data DIR to explore its test images."}`;
    $("draw-title").textContent = "1. Pick a test image";
  }
  for (const id of ["input", "recon"]) $(id).width = $(id).height = S;
  paintGray($("input"), null);
  paintGray(recon, null);
  makeBars(C);
  makeSliders(D, R);
  $("random").hidden = !(T > 0);
  if (!drawable) $("random").textContent = "Random test image";
  if (drawable)
    setStatus(T > 0 ? "Ready: draw a digit, or pick a random test digit."
                    : "Ready: draw a digit (the server has no test images).");
  else
    setStatus(T > 0 ? "Ready: pick a random test image." : "Ready (the server has no test images).");
  document.body.dataset.ready = "1";
}

start();

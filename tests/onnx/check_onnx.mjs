// check_onnx.mjs: runs an exported capsnet model (python/capsnet_torch.py onnx) in ONNX
// Runtime for Node on the first N MNIST test images, with batches of 1 and of 100 images,
// and compares its capsule lengths and predictions with a per-image CSV of the same model
// (capsnet test --per-image, or capsnet_torch.py lengths). DATA_DIR holds a test set as
// capsnet reads it: t10k-images-idx3-ubyte[.gz] ([N][H][W], or [N][C][H][W]) and labels.
//   node tests/onnx/check_onnx.mjs MODEL.onnx DATA_DIR N PER_IMAGE.csv [TOLERANCE]
// TOLERANCE (1e-5) bounds the largest |length difference|. Prints the measured largest
// difference and "ok", or one line per problem and exits 1; 2 on a usage error.
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import path from "node:path";
import ort from "onnxruntime-node";

const [model, dataDir, countArg, csvPath, tolArg] = process.argv.slice(2);
if (!csvPath) {
  console.error("usage: node check_onnx.mjs MODEL.onnx DATA_DIR N PER_IMAGE.csv [TOLERANCE]");
  process.exit(2);
}
const count = Number(countArg);
const tolerance = tolArg === undefined ? 1e-5 : Number(tolArg);
const BATCHES = [1, 100];
const problems = [];

function fail(msg) {
  console.error(`check_onnx: error: ${msg}`);
  process.exit(1);
}

// Pixels: capsnet scales byte b to the float32 nearest to b / 255 (the division correctly
// rounded, (float)b / 255.0f in C, torch's x.float() / 255). Math.fround(b / 255) rounds
// the double quotient to float32; a double carries more than 2 x 24 + 2 bits, so that is
// the correctly rounded float32 quotient too. Checked here for every byte: no float32 on
// either side of q is closer to b / 255 (q * 255 is exact in double: 24 + 8 bits).
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function nextFloat(q, up) { // the float32 neighbour of a positive float32 q (or of 0, upwards)
  f32[0] = q;
  if (q === 0) { u32[0] = up ? 1 : 0; return f32[0]; }
  u32[0] += up ? 1 : -1;
  return f32[0];
}
const SCALE = new Float32Array(256);
for (let b = 0; b < 256; b++) {
  const q = Math.fround(b / 255);
  const err = (x) => Math.abs(x * 255 - b);
  if (err(nextFloat(q, true)) < err(q) || (b > 0 && err(nextFloat(q, false)) < err(q)))
    fail(`Math.fround(${b} / 255) is not the float32 nearest to ${b} / 255`);
  SCALE[b] = q;
}

// IDX files (big-endian header: magic, then one u32 per dimension), gzip'd or not, as
// capsnet reads them (src/idx.c).
function readIdx(name, magics) {
  let file = path.join(dataDir, name + ".gz");
  let bytes;
  try {
    bytes = gunzipSync(readFileSync(file));
  } catch (e) {
    if (e.code !== "ENOENT") fail(`${file}: ${e.message}`);
    file = path.join(dataDir, name);
    try { bytes = readFileSync(file); } catch (e2) { fail(`${file}: ${e2.message}`); }
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4 || !magics.includes(view.getUint32(0))) {
    const want = magics.map((m) => "0x" + m.toString(16).padStart(8, "0")).join(" or ");
    fail(`${file}: not an IDX file of this kind (expected magic ${want})`);
  }
  const rank = bytes[3];
  const dims = [];
  for (let k = 0; k < rank; k++) dims.push(view.getUint32(4 + 4 * k));
  const item = dims.slice(1).reduce((a, b) => a * b, 1);
  const start = 4 + 4 * rank;
  const size = start + dims[0] * item;
  if (bytes.length !== size)
    fail(`${file}: size does not match its header (expected ${size} bytes, got ${bytes.length})`);
  if (count > dims[0]) fail(`${file}: ${dims[0]} items (expected at least ${count})`);
  return { dims, data: bytes.subarray(start, start + count * item), item };
}

if (!Number.isInteger(count) || count < 1) fail(`N must be a positive integer (got ${countArg})`);
// Images [N][H][W] (MNIST) or [N][C][H][W], labels [N].
const images = readIdx("t10k-images-idx3-ubyte", [0x00000803, 0x00000804]);
const labels = readIdx("t10k-labels-idx1-ubyte", [0x00000801]).data;
const shape = images.dims.length === 3 ? [1, ...images.dims.slice(1)] : images.dims.slice(1);
if (!Number.isFinite(tolerance) || tolerance < 0) fail(`TOLERANCE must be >= 0 (got ${tolArg})`);
const P = images.item;

// The per-image CSV: index,label,prediction,length_0,...,length_{J-1}
const lines = readFileSync(csvPath, "utf8").trim().split("\n");
const header = lines[0].split(",");
const J = header.length - 3;
const wantHeader = ["index", "label", "prediction"];
for (let j = 0; j < J; j++) wantHeader.push(`length_${j}`);
if (J < 2 || header.join(",") !== wantHeader.join(","))
  fail(`${csvPath}: unexpected header "${lines[0]}"`);
if (lines.length - 1 < count)
  fail(`${csvPath}: ${lines.length - 1} images (expected at least ${count})`);
const rows = lines.slice(1, count + 1).map((l, i) => {
  const f = l.split(",").map(Number);
  if (f.length !== J + 3 || f[0] !== i) fail(`${csvPath}: line ${i + 2} malformed: "${l}"`);
  return { label: f[1], prediction: f[2], lengths: f.slice(3) };
});
rows.forEach((r, i) => {
  if (r.label !== labels[i])
    problems.push(`image ${i}: label ${labels[i]} in the data, ${r.label} in ${csvPath}`);
});

let session;
try {
  session = await ort.InferenceSession.create(model);
} catch (e) {
  fail(`${model}: ${e.message}`);
}
const [inputs, outputs] = [session.inputNames.join(), session.outputNames.join()];
if (inputs !== "image" || outputs !== "lengths,reconstruction")
  fail(`${model}: inputs ${inputs}, outputs ${outputs} (expected image; lengths,reconstruction)`);

let maxDiff = 0;
let worst = -1;
for (const B of BATCHES) {
  const start = Date.now();
  for (let first = 0; first < count; first += B) {
    const n = Math.min(B, count - first);
    const x = new Float32Array(n * P);
    for (let k = 0; k < n * P; k++) x[k] = SCALE[images.data[first * P + k]];
    const out = await session.run({ image: new ort.Tensor("float32", x, [n, ...shape]) });
    const len = out.lengths, rec = out.reconstruction;
    if (len.dims.join() !== `${n},${J}` || rec.dims.join() !== `${n},${P}`)
      fail(`${model}: output shapes [${len.dims}] and [${rec.dims}] ` +
           `(expected [${n},${J}] and [${n},${P}])`);
    const outside = rec.data.find((v) => !(v >= 0 && v <= 1));
    if (outside !== undefined)
      problems.push(`batch ${B}: reconstruction value ${outside} outside [0, 1]`);
    for (let b = 0; b < n; b++) {
      const i = first + b;
      let pred = 0;
      for (let j = 0; j < J; j++) {
        const v = len.data[b * J + j];
        if (v > len.data[b * J + pred]) pred = j; // the first of equal lengths, as capsnet
        const d = Math.abs(v - rows[i].lengths[j]);
        if (Number.isNaN(d))
          problems.push(`batch ${B}: image ${i}: length ${j} ${v}, ${rows[i].lengths[j]} in CSV`);
        else if (d > maxDiff) [maxDiff, worst] = [d, i];
      }
      if (pred !== rows[i].prediction)
        problems.push(`batch ${B}: image ${i}: prediction ${pred}, ` +
                      `${rows[i].prediction} in ${csvPath}`);
    }
  }
  console.log(`batch ${B}: ${count} images in ${((Date.now() - start) / 1000).toFixed(2)} s`);
}
console.log(`max |lengths difference| ${maxDiff.toExponential(3)} (image ${worst}), ` +
            `tolerance ${tolerance}`);
if (!(maxDiff <= tolerance))
  problems.push(`lengths differ by ${maxDiff} (image ${worst}), more than ${tolerance}`);
for (const p of problems.slice(0, 20)) console.error(`check_onnx: ${p}`);
if (problems.length > 20) console.error(`check_onnx: ... ${problems.length - 20} more`);
if (problems.length) process.exit(1);
console.log(`${model}: ${count} images, batches ${BATCHES.join(" and ")}: ` +
            `lengths and predictions match ${csvPath}: ok`);

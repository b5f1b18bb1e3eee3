// homography-service demo page: two images in, A warped into B's frame out.
// Plain ES module, no build step; it calls the public API only (POST /estimate, GET /ready).

const $ = (sel) => document.querySelector(sel);
const METHOD_HELP = {
  auto: "Runs the network and the keypoint features, refines both photometrically and keeps the best-scoring answer. The most accurate, and the slowest.",
  features: "SIFT or ORB keypoints, Lowe's ratio test and RANSAC. Strong on textured pairs and any amount of motion.",
  network: "HomographyNet on a 128×128 gray thumbnail. Fast; bounded to motions of about a quarter of the image.",
};
const RETRY_DEADLINE_MS = 20000;

const state = {
  images: { a: null, b: null },  // {blob, name, bitmap, width, height, origWidth, origHeight, canvas}
  sample: null,                  // the manifest entry of the chosen sample pair
  result: null,                  // the /estimate JSON
  uploaded: null,                // {a, b} image entries the result belongs to
  viewH: null,                   // the matrix shown (the answer, or a clicked candidate)
  viewName: null,
  frame: null,                   // the canvas frame: B and A's outline around it
  warped: null,                  // canvas: A warped into the frame with viewH
  busy: false,
};

// ---------------------------------------------------------------------------------- images
async function loadImage(blob, name) {
  const name0 = name;
  const bitmap = await createImageBitmap(blob);
  const maxSide = Number($("#max-side").value);
  const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, 0, 0, width, height);
  let upload = blob;
  if (scale < 1) {  // send what is shown: the downscaled pixels
    const type = blob.type === "image/jpeg" ? "image/jpeg" : "image/png";
    upload = await new Promise((resolve) => canvas.toBlob(resolve, type, 0.92));
    name = name.replace(/\.[^.]*$/, "") + (type === "image/jpeg" ? ".jpg" : ".png");
  }
  return {
    blob: upload, name, width, height, origWidth: bitmap.width, origHeight: bitmap.height, canvas,
    source: blob, sourceName: name0,
  };
}

async function setImage(side, blob, name, fromSample = false) {
  try {
    const img = await loadImage(blob, name);
    state.images[side] = img;
    if (!fromSample) {
      state.sample = null;
      document.querySelectorAll(".sample.active").forEach((el) => el.classList.remove("active"));
    }
    const drop = $(`#drop-${side}`);
    drop.classList.add("has-image");
    drop.querySelector(".drop-thumb").src = img.canvas.toDataURL("image/jpeg", 0.7);
    const size = `${img.width}×${img.height}`;
    drop.querySelector(".drop-meta").textContent =
      img.width === img.origWidth ? size : `${size} (from ${img.origWidth}×${img.origHeight})`;
    hideError();
  } catch (err) {
    showError(`Image ${side.toUpperCase()}: this file could not be read as an image (${err.message || err}).`);
  }
  updateRunButton();
}

function wireDrop(side) {
  const drop = $(`#drop-${side}`);
  const input = $(`#file-${side}`);
  input.addEventListener("change", () => {
    if (input.files.length) setImage(side, input.files[0], input.files[0].name);
  });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragover"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragover"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("dragover");
    const files = [...e.dataTransfer.files].filter((f) => f.type.startsWith("image/"));
    if (files.length >= 2 && side === "a") {  // two files dropped on A: A and B at once
      setImage("a", files[0], files[0].name);
      setImage("b", files[1], files[1].name);
    } else if (files.length) {
      setImage(side, files[0], files[0].name);
    }
  });
}

async function loadSamples() {
  const box = $("#samples");
  let samples = [];
  try {
    samples = await (await fetch("/static/samples/samples.json")).json();
  } catch {
    box.textContent = "No samples available.";
    return;
  }
  for (const s of samples) {
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "sample";
    btn.dataset.sample = s.id;
    btn.title = `${s.note}\n${s.credit}`;
    btn.innerHTML = `<img alt="" src="/static/samples/${s.image_a}"><div><strong></strong><span></span></div>`;
    btn.querySelector("strong").textContent = s.title;
    btn.querySelector("span").textContent = s.note;
    btn.addEventListener("click", () => chooseSample(s, btn));
    box.appendChild(btn);
  }
}

async function chooseSample(sample, btn) {
  document.querySelectorAll(".sample.active").forEach((el) => el.classList.remove("active"));
  btn.classList.add("active");
  const [a, b] = await Promise.all(
    [sample.image_a, sample.image_b].map((f) => fetch(`/static/samples/${f}`).then((r) => r.blob())),
  );
  await Promise.all([setImage("a", a, sample.image_a, true), setImage("b", b, sample.image_b, true)]);
  state.sample = sample;
}

// ---------------------------------------------------------------------------------- the API
function method() { return document.querySelector("input[name=method]:checked").value; }

function errorText(status, body) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) {
    return d.map((e) => {
      const loc = Array.isArray(e.loc) ? e.loc.filter((p) => p !== "body").join(".") : e.loc;
      return loc && !String(e.msg).startsWith(loc) ? `${loc}: ${e.msg}` : e.msg;
    }).join("; ");
  }
  return `HTTP ${status}`;
}

async function postEstimate(a, b) {
  const params = new URLSearchParams({ method: method() });
  if (method() !== "network") params.set("detector", $("#detector").value);
  if (method() !== "auto" && $("#refine").checked) params.set("refine", "true");
  const headers = {};
  const key = $("#api-key").value.trim();
  if (key) headers["X-API-Key"] = key;
  const deadline = performance.now() + RETRY_DEADLINE_MS;
  for (let attempt = 0; ; attempt++) {
    const form = new FormData();
    form.append("image_a", a.blob, a.name);
    form.append("image_b", b.blob, b.name);
    const resp = await fetch(`/estimate?${params}`, { method: "POST", body: form, headers });
    let body = null;
    try { body = await resp.json(); } catch { /* not JSON */ }
    if (resp.ok) return body;
    const wait = 1000 * Math.max(Number(resp.headers.get("retry-after")) || 0, 0.25 * 2 ** attempt);
    if (resp.status === 503 && performance.now() + wait < deadline) {
      setStatus(`The server is busy; trying again in ${(wait / 1000).toFixed(1)} s…`);
      await new Promise((r) => setTimeout(r, wait));
      continue;
    }
    const err = new Error(errorText(resp.status, body));
    err.status = resp.status;
    throw err;
  }
}

async function run() {
  const { a, b } = state.images;
  if (!a || !b || state.busy) return;
  state.busy = true;
  hideError();
  updateRunButton();
  $("#stage").dataset.state = "busy";
  $("#result").dataset.state = "busy";
  const t0 = performance.now();
  setStatus(`Estimating with method=${method()}…`);
  try {
    const result = await postEstimate(a, b);
    state.result = result;
    state.uploaded = { a, b };
    const ms = performance.now() - t0;
    showResult(result);
    setStatus(`Answered in ${ms.toFixed(0)} ms (server ${result.timings_ms.total.toFixed(0)} ms).`);
  } catch (err) {
    $("#stage").dataset.state = state.result ? "done" : "empty";
    $("#result").dataset.state = "error";
    showError(err.status ? `${err.status}: ${err.message}` : `The request failed: ${err.message}`);
    setStatus("");
  } finally {
    state.busy = false;
    updateRunButton();
  }
}

// ---------------------------------------------------------------------------------- geometry
function apply(H, x, y) {
  const w = H[2][0] * x + H[2][1] * y + H[2][2];
  return [(H[0][0] * x + H[0][1] * y + H[0][2]) / w, (H[1][0] * x + H[1][1] * y + H[1][2]) / w];
}

function invert3(m) {
  const [a, b, c] = m[0], [d, e, f] = m[1], [g, h, i] = m[2];
  const A = e * i - f * h, B = -(d * i - f * g), C = d * h - e * g;
  const det = a * A + b * B + c * C;
  return [
    [A / det, -(b * i - c * h) / det, (b * f - c * e) / det],
    [B / det, (a * i - c * g) / det, -(a * f - c * d) / det],
    [C / det, -(a * h - b * g) / det, (a * e - b * d) / det],
  ];
}

function corners(width, height) {
  return [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]];
}

// The canvas frame: B plus the parts of A's outline (and of a sample's true outline) around it,
// up to half of B on each side, so that corners outside B stay visible. B's pixel (x, y) is at
// (x + ox, y + oy) on the canvas.
function viewFrame(a, b, H, truth) {
  const pts = corners(a.width, a.height).map(([x, y]) => apply(H, x, y));
  const all = truth ? pts.concat(corners(a.width, a.height).map(([x, y]) => apply(truth, x, y))) : pts;
  let x0 = 0, y0 = 0, x1 = b.width, y1 = b.height;
  if (all.every(([x, y]) => Number.isFinite(x) && Number.isFinite(y))) {
    const pad = Math.round(0.06 * Math.max(b.width, b.height));
    for (const [x, y] of all) {
      x0 = Math.min(x0, Math.floor(x) - pad); x1 = Math.max(x1, Math.ceil(x) + pad);
      y0 = Math.min(y0, Math.floor(y) - pad); y1 = Math.max(y1, Math.ceil(y) + pad);
    }
  }
  x0 = Math.max(x0, -Math.round(b.width / 2)); x1 = Math.min(x1, Math.round(1.5 * b.width));
  y0 = Math.max(y0, -Math.round(b.height / 2)); y1 = Math.min(y1, Math.round(1.5 * b.height));
  return { ox: -x0, oy: -y0, width: x1 - x0, height: y1 - y0, corners: pts };
}

// A warped into the frame (bilinear, transparent outside A): in B's pixels the same as
// cv2.warpPerspective(A, b_H_a, (W_b, H_b)), pixel centres at integer coordinates.
function warpInto(imgA, frame, b_H_a) {
  const wa = imgA.width, ha = imgA.height, wf = frame.width, hf = frame.height;
  const src = imgA.canvas.getContext("2d").getImageData(0, 0, wa, ha).data;
  const out = new ImageData(wf, hf);
  const dst = out.data;
  const m = invert3(b_H_a).flat();
  // only the bounding box of A's outline (the whole frame when a corner is at infinity)
  const xs = frame.corners.map((p) => p[0] + frame.ox), ys = frame.corners.map((p) => p[1] + frame.oy);
  const finite = xs.concat(ys).every(Number.isFinite);
  const bx0 = finite ? Math.max(0, Math.floor(Math.min(...xs))) : 0;
  const bx1 = finite ? Math.min(wf, Math.ceil(Math.max(...xs)) + 1) : wf;
  const by0 = finite ? Math.max(0, Math.floor(Math.min(...ys))) : 0;
  const by1 = finite ? Math.min(hf, Math.ceil(Math.max(...ys)) + 1) : hf;
  for (let fy = by0; fy < by1; fy++) {
    const y = fy - frame.oy, x = bx0 - frame.ox;
    let u = m[0] * x + m[1] * y + m[2], v = m[3] * x + m[4] * y + m[5], w = m[6] * x + m[7] * y + m[8];
    for (let fx = bx0; fx < bx1; fx++, u += m[0], v += m[3], w += m[6]) {
      const sx = u / w, sy = v / w;
      if (!(w > 0) || sx < -0.5 || sy < -0.5 || sx > wa - 0.5 || sy > ha - 0.5) continue;
      const cx = Math.min(Math.max(sx, 0), wa - 1), cy = Math.min(Math.max(sy, 0), ha - 1);
      const x0 = Math.floor(cx), y0 = Math.floor(cy), tx = cx - x0, ty = cy - y0;
      const x1 = Math.min(x0 + 1, wa - 1), y1 = Math.min(y0 + 1, ha - 1);
      const i00 = (y0 * wa + x0) * 4, i01 = (y0 * wa + x1) * 4, i10 = (y1 * wa + x0) * 4, i11 = (y1 * wa + x1) * 4;
      const o = (fy * wf + fx) * 4;
      for (let c = 0; c < 3; c++) {
        const top = src[i00 + c] + (src[i01 + c] - src[i00 + c]) * tx;
        const bot = src[i10 + c] + (src[i11 + c] - src[i10 + c]) * tx;
        dst[o + c] = top + (bot - top) * ty;
      }
      dst[o + 3] = 255;
    }
  }
  const canvas = document.createElement("canvas");
  canvas.width = wf;
  canvas.height = hf;
  canvas.getContext("2d").putImageData(out, 0, 0);
  return canvas;
}

// ---------------------------------------------------------------------------------- drawing
function viewMode() { return document.querySelector("input[name=view]:checked").value; }

function render() {
  const up = state.uploaded, f = state.frame;
  if (!up || !state.warped) return;
  const canvas = $("#view");
  if (canvas.width !== f.width || canvas.height !== f.height) {
    canvas.width = f.width;
    canvas.height = f.height;
  }
  canvas.dataset.ox = f.ox;  // where B's pixel (0, 0) is on the canvas
  canvas.dataset.oy = f.oy;
  const { width, height } = up.b;
  const ctx = canvas.getContext("2d");
  const t = Number($("#slider").value) / 100;
  ctx.clearRect(0, 0, f.width, f.height);
  ctx.globalAlpha = 1;
  ctx.drawImage(up.b.canvas, f.ox, f.oy);
  const mode = viewMode();
  ctx.save();
  if (mode === "blend") {
    ctx.globalAlpha = t;
  } else if (mode === "checker") {
    const cell = Math.max(8, Math.round((0.04 + 0.21 * t) * Math.min(width, height)));
    ctx.beginPath();
    for (let y = f.oy % cell - cell, j = 0; y < f.height; y += cell, j++) {
      for (let x = f.ox % (2 * cell) - 2 * cell + (j % 2) * cell; x < f.width; x += 2 * cell) {
        ctx.rect(x, y, cell, cell);
      }
    }
    ctx.clip();
  } else {
    ctx.beginPath();
    ctx.rect(0, 0, f.ox + Math.round(t * width), f.height);
    ctx.clip();
  }
  ctx.drawImage(state.warped, 0, 0);
  ctx.restore();
  if (mode === "swipe") {
    ctx.fillStyle = "rgba(255,255,255,0.95)";
    ctx.fillRect(f.ox + Math.round(t * width) - 1, 0, 2, f.height);
  }
  if (f.width !== width || f.height !== height) {  // B's extent, when A reaches beyond it
    ctx.setLineDash([6, 4]);
    ctx.strokeStyle = "rgba(15, 23, 42, 0.55)";
    ctx.lineWidth = 1;
    ctx.strokeRect(f.ox + 0.5, f.oy + 0.5, width - 1, height - 1);
    ctx.setLineDash([]);
  }
  drawOutline();
}

function polygonPoints(pts) {
  // pixel (x, y) is the centre of the square [x, x+1) in canvas coordinates
  return pts.map(([x, y]) => `${(x + 0.5).toFixed(3)},${(y + 0.5).toFixed(3)}`).join(" ");
}

function drawOutline() {
  const up = state.uploaded;
  const f = state.frame;
  $("#overlay").setAttribute("viewBox", `${-f.ox} ${-f.oy} ${f.width} ${f.height}`);
  const pts = f.corners;
  const finite = pts.every(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  $("#outline").setAttribute("points", finite ? polygonPoints(pts) : "");
  $("#outline").dataset.corners = JSON.stringify(pts);
  const truth = trueMatrix();
  $("#outline-truth").setAttribute("points", truth
    ? polygonPoints(corners(up.a.width, up.a.height).map(([x, y]) => apply(truth, x, y))) : "");
  const labels = $("#corner-labels");
  labels.innerHTML = "";
  if (!finite) return;
  const r = Math.max(3, 0.008 * Math.max(up.b.width, up.b.height));
  ["TL", "TR", "BR", "BL"].forEach((name, i) => {
    const [x, y] = pts[i];
    const dot = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    dot.setAttribute("class", "corner-dot");
    dot.setAttribute("cx", x + 0.5);
    dot.setAttribute("cy", y + 0.5);
    dot.setAttribute("r", r);
    const text = document.createElementNS("http://www.w3.org/2000/svg", "text");
    text.setAttribute("class", "corner-label");
    text.setAttribute("x", x + 0.5 + 1.6 * r);
    text.setAttribute("y", y + 0.5 - 1.2 * r);
    text.style.fontSize = `${Math.max(14, 0.045 * up.b.height)}px`;
    text.textContent = name;
    labels.append(dot, text);
  });
}

// The sample's true b_H_a, in the pixels actually sent (samples may have been downscaled).
function trueMatrix() {
  const s = state.sample, up = state.uploaded;
  if (!s || !up || state.images.a !== up.a || state.images.b !== up.b) return null;
  const sa = up.a.width / up.a.origWidth, sb = up.b.width / up.b.origWidth;
  const H = s.b_H_a;
  const M = [0, 1, 2].map((i) => [0, 1, 2].map((j) => H[i][j] * (i < 2 ? sb : 1) / (j < 2 ? sa : 1)));
  return M.map((row) => row.map((v) => v / M[2][2]));
}

function cornerError(H, truth, a) {
  const d = corners(a.width, a.height).map(([x, y]) => {
    const [p, q] = apply(H, x, y), [u, v] = apply(truth, x, y);
    return Math.hypot(p - u, q - v);
  });
  return d.reduce((s, v) => s + v, 0) / d.length;
}

// ---------------------------------------------------------------------------------- results
function fmt(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v !== 0 && Math.abs(v) < 1e-3) return v.toExponential(3);
  return v.toFixed(digits);
}
function pct(v) { return v === null || v === undefined ? "–" : `${(100 * v).toFixed(0)} %`; }

function showMatrix(H) {
  const body = $("#matrix tbody");
  body.innerHTML = "";
  for (const row of H) {
    const tr = document.createElement("tr");
    for (const v of row) {
      const td = document.createElement("td");
      td.dataset.value = String(v);
      td.textContent = fmt(v);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  $("#copy-matrix").disabled = false;
}

function showCorners(pts) {
  const body = $("#corners tbody");
  body.innerHTML = "<tr><th></th><th>x</th><th>y</th></tr>";
  ["top-left", "top-right", "bottom-right", "bottom-left"].forEach((name, i) => {
    const tr = document.createElement("tr");
    tr.innerHTML = `<th>${name}</th><td>${fmt(pts[i][0], 1)}</td><td>${fmt(pts[i][1], 1)}</td>`;
    body.appendChild(tr);
  });
}

function showConfidence(r) {
  const q = r.quality;
  $("#confidence-value").textContent = pct(q.confidence);
  const badge = $("#confidence-badge");
  const level = q.low_confidence ? "bad" : q.confidence >= 0.8 ? "ok" : "warn";
  badge.className = `pill pill-${level}`;
  badge.textContent = q.low_confidence ? "low confidence" : q.confidence >= 0.8 ? "confident" : "fair";
  const bar = $("#confidence-bar");
  bar.style.width = `${Math.round(100 * q.confidence)}%`;
  bar.style.background = `var(--${level})`;
  const facts = [
    ["Chosen", r.chosen],
    ["Method", r.method],
    ["Photometric score", fmt(q.photometric.score, 3)],
    ["NCC / ∇ NCC", `${fmt(q.photometric.ncc, 3)} / ${fmt(q.photometric.gradient_ncc, 3)}`],
    ["Overlap", pct(q.photometric.overlap)],
    ["Agreeing sources", q.agreeing.length ? q.agreeing.join(", ") : "–"],
  ];
  if (r.features) facts.push(["Feature inliers", `${r.features.inliers} of ${r.features.matches} matches`]);
  if (r.refine && r.refine.applied) facts.push(["Refined", `${r.refine.result.iterations} iterations`]);
  const truth = trueMatrix();
  if (truth) facts.push(["True corner error", `${fmt(cornerError(r.b_H_a, truth, state.uploaded.a), 2)} px (sample's ground truth)`]);
  const dl = $("#facts");
  dl.innerHTML = "";
  for (const [k, v] of facts) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  }
  const ul = $("#reasons");
  ul.innerHTML = "";
  for (const reason of q.reasons) {
    const li = document.createElement("li");
    li.textContent = reason;
    ul.appendChild(li);
  }
}

function showCandidates(r) {
  const body = $("#candidates tbody");
  body.innerHTML = "";
  if (!r.candidates.length) {
    body.innerHTML = '<tr class="empty"><td colspan="10">No candidates.</td></tr>';
    return;
  }
  r.candidates.forEach((c) => {
    const tr = document.createElement("tr");
    tr.dataset.name = c.name;
    const cells = [
      c.name + (c.name === r.chosen ? '<span class="tag">chosen</span>' : ""),
      c.refined ? "yes" : "no",
      fmt(c.photometric.score, 3), fmt(c.photometric.ncc, 3), fmt(c.photometric.gradient_ncc, 3),
      pct(c.photometric.overlap), pct(c.confidence), c.seconds ? (1000 * c.seconds).toFixed(0) : "–",
      c.agreeing.join(", ") || "–", c.detail || "",
    ];
    const numeric = new Set([2, 3, 4, 5, 6, 7]);
    cells.forEach((html, i) => {
      const td = document.createElement("td");
      if (numeric.has(i)) td.className = "num";
      if (i === 9) td.className = "note";
      if (i === 0) td.innerHTML = html; else td.textContent = html;
      tr.appendChild(td);
    });
    tr.addEventListener("click", () => viewMatrix(c.b_H_a, c.name));
    body.appendChild(tr);
  });
}

function viewMatrix(H, name) {
  state.viewH = H;
  state.viewName = name;
  state.frame = viewFrame(state.uploaded.a, state.uploaded.b, H, trueMatrix());
  state.warped = warpInto(state.uploaded.a, state.frame, H);
  document.querySelectorAll("#candidates tbody tr").forEach((tr) => {
    tr.classList.toggle("viewing", tr.dataset.name === name);
  });
  const answer = name === state.result.chosen && H === state.result.b_H_a;
  $("#viewing").innerHTML = `<span class="legend"><i></i>A's outline in B</span>`
    + (trueMatrix() ? '<span class="legend"><i class="truth"></i>ground truth</span>' : "")
    + (answer ? `Viewing the answer (<code>${name}</code>).`
              : `Viewing candidate <code>${name}</code>; the answer is <code>${state.result.chosen}</code>.`);
  render();
}

function showResult(r) {
  showConfidence(r);
  showMatrix(r.b_H_a);
  showCorners(r.corners_in_b);
  showCandidates(r);
  viewMatrix(r.b_H_a, r.chosen);
  const res = $("#result");
  res.dataset.imageA = r.image_a_size.join("x");  // the sizes the server decoded
  res.dataset.imageB = r.image_b_size.join("x");
  $("#stage").dataset.state = "done";
  res.dataset.state = "done";
}

// ---------------------------------------------------------------------------------- page
function setStatus(text) { $("#run-status").textContent = text; }
function showError(text) { const el = $("#error"); el.textContent = text; el.hidden = false; }
function hideError() { $("#error").hidden = true; }

function updateRunButton() {
  const btn = $("#run");
  btn.disabled = !(state.images.a && state.images.b) || state.busy;
  btn.classList.toggle("busy", state.busy);
  btn.textContent = state.busy ? "Estimating…" : "Estimate homography";
}

function updateMethod() {
  const m = method();
  $("#method-help").textContent = METHOD_HELP[m];
  $("#detector-field").style.visibility = m === "network" ? "hidden" : "visible";
  const refine = $("#refine");
  refine.disabled = m === "auto";
  $("#refine-field").classList.toggle("disabled", m === "auto");
  $("#refine-field").title = m === "auto" ? "method=auto refines its candidates itself" : "";
}

function updateSlider() {
  const labels = { blend: "Opacity of A", checker: "Tile size", swipe: "Swipe position" };
  $("#slider-label").textContent = labels[viewMode()];
  render();
}

async function checkServer() {
  const pill = $("#server-status");
  try {
    const resp = await fetch("/ready");
    const body = await resp.json();
    pill.className = `pill ${resp.ok ? "pill-ok" : "pill-warn"}`;
    pill.textContent = resp.ok ? "ready" : "starting";
    pill.title = Object.entries(body.engines || {})
      .map(([name, e]) => `${name}: ${e.ready ? "ready" : e.detail}`).join("\n");
    if (!resp.ok) setTimeout(checkServer, 3000);
  } catch {
    pill.className = "pill pill-bad";
    pill.textContent = "unreachable";
    setTimeout(checkServer, 5000);
  }
}

function init() {
  wireDrop("a");
  wireDrop("b");
  $("#run").addEventListener("click", run);
  document.querySelectorAll("input[name=method]").forEach((el) => el.addEventListener("change", updateMethod));
  document.querySelectorAll("input[name=view]").forEach((el) => el.addEventListener("change", updateSlider));
  $("#slider").addEventListener("input", render);
  $("#max-side").addEventListener("change", () => {  // re-prepare what is loaded at the new limit
    for (const side of ["a", "b"]) {
      const img = state.images[side];
      if (img) setImage(side, img.source, img.sourceName, state.sample !== null);
    }
  });
  $("#show-outline").addEventListener("change", (e) => $("#stage").classList.toggle("no-outline", !e.target.checked));
  $("#copy-matrix").addEventListener("click", async () => {
    const text = JSON.stringify(state.result.b_H_a);
    try { await navigator.clipboard.writeText(text); setStatus("Matrix copied as JSON."); }
    catch { setStatus(text); }
  });
  const key = sessionStorage.getItem("homography-api-key");
  if (key) $("#api-key").value = key;
  $("#api-key").addEventListener("change", (e) => sessionStorage.setItem("homography-api-key", e.target.value));
  updateMethod();
  updateSlider();
  loadSamples();
  checkServer();
}

init();

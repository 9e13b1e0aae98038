// The Gradserve playground. Run: POST /v1/graph (nodes, edges, shapes; nothing runs), then
// POST /v1/grad (values of every node, gradients of the output with respect to every value that
// requires grad); draw the graph as SVG; show the equivalent curl and Python client code.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const FUNCTIONAL = new Set(["grad", "jacobian", "hessian", "vjp", "jvp", "hvp", "vhp"]);
const NUMPY = {FP16: "float16", FP32: "float32", FP64: "float64", INT8: "int8", INT16: "int16",
               INT32: "int32", INT64: "int64", UINT8: "uint8", BOOL: "bool_"};

class InputError extends Error {}

const EXAMPLES = [
  {title: "Linear regression loss (the README's seed)",
   source: "y = 2 * x + 1\nloss = mean((y - (w * x + b)) ** 2)",
   inputs: "w = 0.5  requires_grad\nb = 0.9  requires_grad\nx = [0.1, 0.4, 0.7, 0.9]"},
  {title: "Hessian-vector product: grad inside the graph",
   source: "f = sum(x ** 3)\ng, = grad(f, x, create_graph=True)\ngv = sum(g * v)",
   inputs: "x: FP64 = [1, 2, 3]  requires_grad\nv: FP64 = [1, 0, 0]"},
  {title: "A small MLP with cross-entropy",
   source: "h = relu(X @ W1 + b1)\nlogits = h @ W2\nloss = nn.functional.cross_entropy(logits, target)",
   inputs: "X = [[0.5, -1.0], [1.5, 0.2], [-0.3, 0.8]]\nW1 = [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]]  requires_grad\n" +
           "b1 = [0.01, 0.02, 0.03]  requires_grad\nW2 = [[0.2, -0.1], [0.3, 0.1], [-0.5, 0.4]]  requires_grad\n" +
           "target: INT64 = [0, 1, 1]"},
  {title: "Softmax attention weights",
   source: "scores = q @ transpose(k, 0, 1) / 2\nweights = softmax(scores, dim=-1)\nout = sum(weights @ v)",
   inputs: "q = [[1, 0, 1, 0]]  requires_grad\nk = [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]\n" +
           "v = [[1, 2], [3, 4], [5, 6]]"},
];

// ---------------------------------------------------------------- reading the form
function shapeOf(v, where) {
  if (!Array.isArray(v)) return [];
  const inner = v.length ? shapeOf(v[0], where) : [];
  for (const x of v) {
    if (JSON.stringify(shapeOf(x, where)) !== JSON.stringify(inner))
      throw new InputError(`${where}: the nested lists are ragged`);
  }
  return [v.length, ...inner];
}

// "name[: DTYPE] = value [requires_grad]", one per line; # starts a comment.
function parseInputs(text) {
  const out = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) return;
    const where = `inputs, line ${i + 1}`;
    const m = line.match(/^([A-Za-z_]\w*)\s*(?::\s*([A-Za-z0-9_]+))?\s*=\s*(.+?)(?:\s*,?\s*\b(requires_grad)\b)?$/);
    if (!m) throw new InputError(`${where}: expected "name = value" (optionally "requires_grad"), got "${line}"`);
    const [, name, dtype, valueText, rg] = m;
    let data;
    try {
      data = JSON.parse(valueText.replace(/\bTrue\b/g, "true").replace(/\bFalse\b/g, "false"));
    } catch (e) {
      throw new InputError(`${where}: the value of ${name} is not a number or a list: ${valueText}`);
    }
    const t = {name, datatype: (dtype || "FP32").toUpperCase(), shape: shapeOf(data, where), data};
    if (rg) t.requires_grad = true;
    out.push(t);
  });
  if (!out.length) throw new InputError("inputs: give at least one input, e.g. x = [1, 2, 3]");
  return out;
}

function lastAssigned(source) {
  const lines = source.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  if (!lines.length) return null;
  const m = lines[lines.length - 1].match(/^([A-Za-z_]\w*)\s*(?:,\s*)?=/);
  return m ? m[1] : null;
}

// ---------------------------------------------------------------- talking to the server
async function post(path, body) {
  const headers = {"Content-Type": "application/json", "Accept": "application/json"};
  const key = $("apikey").value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  let r;
  try {
    r = await fetch(path, {method: "POST", headers, body: JSON.stringify(body)});
  } catch (e) {
    throw {title: "The server did not answer", detail: String(e), status: 0};
  }
  const text = await r.text();
  let obj;
  try { obj = JSON.parse(text); } catch (e) { obj = {title: r.statusText, detail: text}; }
  if (!r.ok) throw Object.assign({status: r.status}, obj);
  return obj;
}

// ---------------------------------------------------------------- formatting
function num(x) {
  if (typeof x === "string" || typeof x === "boolean") return String(x);
  if (Number.isInteger(x)) return String(x);
  return String(Number(x.toPrecision(6)));
}

function flat(v) { return Array.isArray(v) ? v.flat(Infinity) : [v]; }

function brief(t, limit) {
  if (!t) return "";
  const d = flat(t.data);
  if (!t.shape.length) return num(d[0]);
  const shown = d.slice(0, limit).map(num).join(", ");
  return `[${shown}${d.length > limit ? `, … (${d.length})` : ""}]`;
}

// ---------------------------------------------------------------- drawing
function el(name, attrs, parent, text) {
  const e = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function layout(vertices) {
  // Layers by longest path from the inputs. An edge that skips layers gets a waypoint in each
  // layer it crosses (so it runs between boxes, not through them); within a layer, vertices and
  // waypoints are ordered by the mean position of their predecessors.
  const byId = new Map(vertices.map((v) => [v.id, v]));
  for (const v of vertices) v.layer = Math.max(-1, ...v.parents.map((p) => byId.get(p).layer)) + 1;
  const all = [...vertices];
  const edges = [];
  for (const v of vertices) v.preds = [];
  for (const v of vertices) {
    for (const p of v.parents) {
      let prev = byId.get(p);
      const via = [];
      for (let l = prev.layer + 1; l < v.layer; l++) {
        const d = {id: `~${all.length}`, waypoint: true, w: 8, h: 0, layer: l, preds: [prev]};
        all.push(d);
        via.push(d);
        prev = d;
      }
      v.preds.push(prev);
      edges.push({from: byId.get(p), to: v, via});
    }
  }
  const layers = [];
  for (const v of all) (layers[v.layer] = layers[v.layer] || []).push(v);
  const GAP_X = 26, GAP_Y = 46, PAD = 18;
  let y = PAD, width = 0;
  layers.forEach((row, li) => {
    if (li > 0) {
      row.forEach((v, i) => {
        const xs = v.preds.map((p) => p.cx);
        v.bary = xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : i;
      });
      row.sort((a, b) => a.bary - b.bary);
    }
    row.rowWidth = row.reduce((a, v) => a + v.w, 0) + GAP_X * (row.length - 1);
    width = Math.max(width, row.rowWidth);
    const h = Math.max(0, ...row.map((v) => v.h));
    let x = 0;
    for (const v of row) {
      v.x = x; v.y = y; v.cx = x + v.w / 2; x += v.w + GAP_X;
      if (v.waypoint) v.h = h;  // the edge runs straight down through this layer
    }
    y += h + GAP_Y;
  });
  for (const row of layers) {  // centre each row
    const shift = PAD + (width - row.rowWidth) / 2;
    for (const v of row) { v.x += shift; v.cx += shift; }
  }
  return {width: width + 2 * PAD, height: y - GAP_Y + PAD, edges};
}

function edgePath(e) {
  const pts = [[e.from.cx, e.from.y + e.from.h]];
  for (const d of e.via) pts.push([d.cx, d.y], [d.cx, d.y + d.h]);
  pts.push([e.to.cx, e.to.y - 2]);
  let path = `M${pts[0][0]},${pts[0][1]}`;
  for (let i = 1; i < pts.length; i++) {
    const [x1, y1] = pts[i - 1], [x2, y2] = pts[i];
    if (i % 2 === 0) { path += ` L${x2},${y2}`; continue; }  // through a waypoint's layer
    const my = (y1 + y2) / 2;
    path += ` C${x1},${my} ${x2},${my} ${x2},${y2}`;
  }
  return path;
}

function drawGraph(desc, result, output) {
  const producer = new Map();
  const vertices = [];
  for (const t of desc.inputs) {
    producer.set(t.name, t.name);
    vertices.push({id: t.name, kind: t.requires_grad ? "param" : "input", title: t.name, parents: [],
                   values: [t], call: null});
  }
  for (const n of desc.nodes) {
    const id = `#${n.index}`;
    const parents = [...new Set(n.inputs.map((name) => producer.get(name)).filter(Boolean))];
    for (const o of n.outputs) producer.set(o.name, id);
    const isOut = n.outputs.some((o) => o.name === output);
    vertices.push({id, kind: isOut ? "out" : "op", title: n.op, parents, values: n.outputs, call: n.call,
                   node: n});
  }
  const CH = 7.25;  // width of a 12px monospace character
  for (const v of vertices) {
    v.lines = [];
    for (const o of v.values) {
      const shape = o.shape === null ? "?" : `[${o.shape.join(", ")}]`;
      const head = v.call ? `${o.name} = ${v.call}` : `${shape} ${o.datatype || ""}`;
      v.lines.push({cls: v.call ? "call" : "shape", text: head});
      if (v.call) v.lines.push({cls: "shape", text: `${shape} ${o.datatype || "?"}`});
      const val = result.values[o.name];
      if (val) v.lines.push({cls: "value", text: `v ${brief(val, 4)}`, data: val, name: o.name});
      const g = result.grads[o.name];
      if (g) v.lines.push({cls: "grad", text: `g ${brief(g, 4)}`, data: g, name: o.name});
    }
    const longest = Math.max(v.title.length * 8, ...v.lines.map((l) => l.text.length * CH));
    v.w = Math.min(Math.max(96, longest + 22), 330);
    v.h = 26 + 16 * v.lines.length;
  }
  const size = layout(vertices);
  const svg = el("svg", {width: size.width, height: size.height, viewBox: `0 0 ${size.width} ${size.height}`,
                         role: "img", "aria-label": "computation graph"});
  const defs = el("defs", {}, svg);
  const marker = el("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
                               markerHeight: 7, orient: "auto-start-reverse"}, defs);
  el("path", {d: "M0,0 L10,5 L0,10 z", fill: "#8b95a7"}, marker);
  for (const e of size.edges) {
    el("path", {class: "edge", d: edgePath(e), "marker-end": "url(#arrow)", "data-from": e.from.id,
                "data-to": e.to.id}, svg);
  }
  for (const v of vertices) {
    const g = el("g", {class: `node ${v.kind}`, transform: `translate(${v.x},${v.y})`, "data-id": v.id,
                       "data-names": v.values.map((o) => o.name).join(" ")}, svg);
    el("rect", {width: v.w, height: v.h, rx: 7, ry: 7}, g);
    el("text", {class: "title", x: 10, y: 18}, g, v.title);
    v.lines.forEach((l, i) => {
      const t = el("text", {class: l.cls, x: 10, y: 36 + 16 * i}, g, clip(l.text, Math.floor((v.w - 18) / CH)));
      if (l.data) { t.setAttribute("data-name", l.name); t.setAttribute("data-values", JSON.stringify(flat(l.data.data))); }
      if (l.text.length > (v.w - 18) / CH) el("title", {}, t, l.text);
    });
    if (v.node && v.node.line) el("title", {}, g, `line ${v.node.line}, col ${v.node.col}: ${v.call}`);
  }
  const box = $("graph");
  box.replaceChildren(svg);
}

function clip(s, n) { return s.length <= n ? s : `${s.slice(0, n - 1)}…`; }

function fillTable(desc, result, output) {
  const body = document.querySelector("#values tbody");
  body.replaceChildren();
  $("grad-head").textContent = output ? `gradient of ${output}` : "gradient";
  const rows = desc.inputs.map((t) => ({o: t, call: "input", where: ""}));
  for (const n of desc.nodes)
    for (const o of n.outputs) rows.push({o, call: n.call, where: n.line ? `${n.line}:${n.col}` : `node ${n.index}`});
  for (const {o, call, where} of rows) {
    const tr = document.createElement("tr");
    tr.dataset.name = o.name;
    const cells = [o.name, call, where, o.shape === null ? "?" : `[${o.shape.join(", ")}]`, o.datatype || "?",
                   brief(result.values[o.name], 12), brief(result.grads[o.name], 12)];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      if (i === 5) td.className = "value";
      if (i === 6) td.className = "grad";
      td.textContent = c;
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
}

// ---------------------------------------------------------------- equivalent code
// JSON on one line with a space after each comma and colon (as the README writes requests)
function compact(v) {
  if (Array.isArray(v)) return `[${v.map(compact).join(", ")}]`;
  if (v !== null && typeof v === "object")
    return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${compact(x)}`).join(", ")}}`;
  return JSON.stringify(v);
}

function jsonBody(req) {
  const ins = req.graph.inputs.map((t) => `      ${compact(t)}`).join(",\n");
  const top = Object.entries(req).filter(([k]) => k !== "graph")
    .map(([k, v]) => `${JSON.stringify(k)}: ${compact(v)}`).join(", ");
  return `{\n  "graph": {\n    "inputs": [\n${ins}\n    ],\n    "source": ${JSON.stringify(req.graph.source)}\n  }` +
         (top ? `,\n  ${top}` : "") + "\n}";
}

function curlFor(req, keyed) {
  const auth = keyed ? ` \\\n  -H "Authorization: Bearer $GRADSERVE_API_KEY"` : "";
  return `curl -s ${window.location.origin}/v1/grad -H 'Content-Type: application/json'${auth} -d '` +
         `${jsonBody(req).replace(/'/g, "'\\''")}'`;
}

function pyValue(v) {
  if (Array.isArray(v)) return `[${v.map(pyValue).join(", ")}]`;
  if (v === true) return "True";
  if (v === false) return "False";
  if (v === "NaN") return "np.nan";
  if (v === "Infinity") return "np.inf";
  if (v === "-Infinity") return "-np.inf";
  return String(v);
}

// Op calls of the expression become client calls (mean(...) -> c.mean(...)); values' methods stay.
function clientSource(source, names) {
  let translatable = true;
  const code = source.replace(/(^|[^\w.\])'"])([A-Za-z_][\w.]*)(\s*\()/g, (all, pre, chain, paren) => {
    const first = chain.split(".")[0];
    if (names.has(first)) return all;
    let op = chain.replace(/^(torch|engine)\./, "").replace(/^F\./, "nn.functional.");
    if (FUNCTIONAL.has(op)) translatable = false;
    return `${pre}c.${op}${paren}`;
  });
  return translatable ? code : null;
}

function pythonFor(req, keyed, names) {
  const url = window.location.origin;
  const connect = keyed ? `Client("${url}", api_key=os.environ["GRADSERVE_API_KEY"])` : `Client("${url}")`;
  const code = clientSource(req.graph.source, names);
  if (code === null) {  // grad(...) and friends have no one-line client equivalent: send the JSON
    return [`import json${keyed ? "\nimport os" : ""}\n\nimport httpx\n`,
            `body = json.loads(r'''${jsonBody(req)}''')`,
            `headers = ${keyed ? '{"Authorization": f"Bearer {os.environ[\'GRADSERVE_API_KEY\']}"}' : "{}"}`,
            `r = httpx.post("${url}/v1/grad", json=body, headers=headers)`,
            "print(r.json())"].join("\n");
  }
  const lines = [`${keyed ? "import os\n\n" : ""}import numpy as np\nfrom client import Client\n`,
                 `c = ${connect}`];
  for (const t of req.graph.inputs) {
    const np = NUMPY[t.datatype] || "float32";
    const data = t.shape.length ? `np.array(${pyValue(t.data)}, np.${np})` : `np.${np}(${pyValue(t.data)})`;
    lines.push(`${t.name} = c.tensor(${data}${t.requires_grad ? ", requires_grad=True" : ""})`);
  }
  lines.push(code.trim());
  const out = req.outputs ? req.outputs[0] : null;
  if (out && req.inputs.length) {
    const gs = req.inputs.map((n) => `grad_${n}`);
    lines.push(`${gs.join(", ")}${gs.length === 1 ? "," : ""} = c.autograd_grad(${out}, [${req.inputs.join(", ")}])`);
    for (const n of req.inputs) lines.push(`print("d${out}/d${n} =", grad_${n})`);
  }
  const ret = req.return || [];
  if (ret.length) lines.push(`print(${ret.map((n) => `"${n} =", c.values(${n})[0]`).join(", ")})`);
  return lines.join("\n");
}

// ---------------------------------------------------------------- errors
function hintFor(detail) {
  if (/only for scalar outputs/.test(detail))
    return "Hint: differentiate a scalar, e.g. add a line `s = sum(y)` (or name one in Differentiate).";
  if (/does not require grad/.test(detail))
    return "Hint: mark an input with requires_grad, e.g. `x = [1, 2]  requires_grad`.";
  return "";
}

function showError(p, source) {
  const box = $("error");
  box.replaceChildren();
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = `${p.status ? p.status + " " : ""}${p.title || "Error"}`;
  box.appendChild(title);
  const detail = document.createElement("div");
  detail.className = "detail";
  detail.textContent = p.detail || "";
  box.appendChild(detail);
  const hint = hintFor(p.detail || "");
  if (hint) {
    const h = document.createElement("div");
    h.className = "hint";
    h.textContent = hint;
    box.appendChild(h);
  }
  if (p.exception) {
    const t = document.createElement("div");
    t.className = "type";
    t.textContent = `as torch would raise: ${p.exception}`;
    box.appendChild(t);
  }
  const lines = source.split("\n");
  for (const e of p.errors || []) {
    const where = document.createElement("div");
    where.className = "where";
    const loc = (e.loc || []).join(".");
    where.textContent = e.line ? `graph.source, line ${e.line}, col ${e.col}` : `at ${loc || "request"}`;
    if (e.line) { where.dataset.line = e.line; where.dataset.col = e.col; }
    box.appendChild(where);
    if (e.line && lines[e.line - 1] !== undefined) {
      const pre = document.createElement("pre");
      pre.className = "snippet";
      pre.textContent = `${lines[e.line - 1]}\n${" ".repeat(Math.max(0, e.col - 1))}^`;
      box.appendChild(pre);
    }
  }
  box.hidden = false;
  const first = (p.errors || []).find((e) => e.line);
  if (first) {  // put the cursor where the error is
    const src = $("source");
    const offset = lines.slice(0, first.line - 1).reduce((a, l) => a + l.length + 1, 0) + first.col - 1;
    src.setSelectionRange(offset, offset);
  }
}

// ---------------------------------------------------------------- run
async function run() {
  const button = $("run");
  const source = $("source").value;
  $("error").hidden = true;
  button.disabled = true;
  $("status").textContent = "running…";
  document.body.dataset.state = "running";
  const started = performance.now();
  try {
    let inputs;
    try {
      inputs = parseInputs($("inputs").value);
    } catch (e) {
      if (e instanceof InputError) throw {title: "Invalid inputs", detail: e.message, errors: []};
      throw e;
    }
    const output = $("output").value.trim() || lastAssigned(source);
    const leaves = inputs.filter((t) => t.requires_grad).map((t) => t.name);
    const base = {graph: {inputs, source}};
    const call = output && leaves.length ? {outputs: [output], inputs: leaves} : {};
    const desc = await post("/v1/graph", {...base, ...call});
    // gradients for every value that requires grad (torch's retain_grad, one request)
    const values = desc.nodes.flatMap((n) => n.outputs).filter((o) => o.datatype !== null);
    const wrt = [...desc.inputs, ...values].filter((o) => o.requires_grad).map((o) => o.name);
    const full = {...base, return: values.map((o) => o.name)};
    if (call.outputs) Object.assign(full, {outputs: [output], inputs: wrt, allow_unused: true});
    const res = await post("/v1/grad", full);
    const result = {values: res.values || {}, grads: {}};
    if (call.outputs) wrt.forEach((n, i) => { if (res.grads[i]) result.grads[n] = res.grads[i]; });
    for (const t of inputs) result.values[t.name] = t;
    drawGraph(desc, result, call.outputs ? output : null);
    fillTable(desc, result, call.outputs ? output : null);
    const simple = {...base, ...call, return: output ? [output] : []};
    const keyed = Boolean($("apikey").value.trim());
    const names = new Set([...inputs.map((t) => t.name), ...desc.nodes.flatMap((n) => n.outputs.map((o) => o.name))]);
    $("curl").textContent = curlFor(simple, keyed);
    $("python").textContent = pythonFor(simple, keyed, names);
    $("curl").classList.remove("empty");
    $("python").classList.remove("empty");
    const ms = Math.round(performance.now() - started);
    $("status").textContent = `${desc.nodes.length} nodes, ${wrt.length} gradients · ${ms} ms`;
    document.body.dataset.state = "done";
  } catch (p) {
    if (p instanceof Error) p = {title: "Error in the page", detail: String(p)};
    showError(p, source);
    $("status").textContent = "";
    document.body.dataset.state = "error";
  } finally {
    button.disabled = false;
  }
}

function init() {
  $("run").addEventListener("click", run);
  for (const id of ["source", "inputs", "output", "apikey"]) {
    $(id).addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); }
    });
  }
  const pick = $("example");
  EXAMPLES.forEach((ex, i) => pick.add(new Option(ex.title, String(i))));
  pick.value = "0";
  pick.addEventListener("change", () => {
    const ex = EXAMPLES[Number(pick.value)];
    if (!ex) return;
    $("source").value = ex.source;
    $("inputs").value = ex.inputs;
    $("output").value = "";
    run();
  });
  for (const id of ["source", "inputs"]) $(id).addEventListener("input", () => { pick.value = ""; });
  const key = $("apikey");
  key.value = sessionStorage.getItem("gradserve-api-key") || "";
  key.addEventListener("change", () => sessionStorage.setItem("gradserve-api-key", key.value.trim()));
  for (const b of document.querySelectorAll("button.copy")) {
    b.addEventListener("click", () => {
      const text = $(b.dataset.for).textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(text).then(() => { b.textContent = "copied"; });
    });
  }
  document.body.dataset.state = "ready";
}

init();

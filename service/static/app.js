// The sslzoo page: wires the controls to the JSON API. State lives here; drawing lives in scatter.js.
import { ApiError, getJson, postJson, showError } from "./api.js";
import { headerSize, readDataUrl, thumbnail } from "./images.js";
import { MISSING, PALETTE, Scatter } from "./scatter.js";

const $ = (id) => document.getElementById(id);
const DEFAULT_LABELS = "cat\ndog\ncar\nshirt\nshoe\nbag";
const DEFAULT_TEMPLATES = "a photo of a {}.\na picture of a {}.";
const state = {
  config: { api_key_required: false, max_request_bytes: 32 * 1024 * 1024, max_image_pixels: 25e6 },
  models: [], indexes: [], query: null, projection: null, thumbs: new Map(), generation: 0,
};
const scatter = new Scatter($("scatter"), $("tooltip"), thumbnailOf);

// -- set-up ------------------------------------------------------------------------------------------
function selectedModel() { return state.models.find((m) => m.ref === $("model-select").value) || null; }
function indexName() { return $("index-input").value.trim(); }
function k() { return Math.max(1, Math.min(100, Number($("k-input").value) || 8)); }
function splitList(text, commas) {
  const parts = commas && !text.includes("\n") ? text.split(",") : text.split("\n");
  return parts.map((s) => s.trim()).filter(Boolean);
}

function renderModelInfo() {
  const m = selectedModel();
  const dl = $("model-info");
  dl.replaceChildren();
  if (!m) return;
  const rows = [["model", m.ref], ["method", m.method], ["architecture", m.arch], ["dimensions", String(m.embed_dim)],
    ["metric", m.metric], ["embedding space", m.embedding_space.slice(0, 16) + "…"],
    ["text tower", m.clip ? "yes (CLIP)" : "no"], ["backend", m.backend || "not loaded yet"]];
  for (const [key, value] of rows) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = key;
    dd.textContent = value;
    if (key === "embedding space") dd.title = m.embedding_space;
    div.append(dt, dd);
    dl.append(div);
  }
  dl.dataset.model = m.ref;
  const clip = Boolean(m.clip);
  $("text-input").disabled = !clip;
  $("text-button").disabled = !clip;
  $("labels-button").disabled = !clip;
  $("text-hint").textContent = clip ? "" : "(needs a CLIP model)";
  $("zs-status").textContent = clip ? "Labels for an image, from this CLIP model." : "Zero-shot labels need a CLIP model.";
}

function renderIndexInfo() {
  const name = indexName();
  const found = state.indexes.find((i) => i.name === name);
  const info = $("index-info");
  if (!name) info.textContent = "Type an index name.";
  else if (!found) info.textContent = `Index “${name}” does not exist yet: adding an image creates it.`;
  else {
    info.textContent = `Index “${name}”: ${found.count} item(s), ${found.dim}-d ${found.metric}, ${found.kind}, ` +
      `made with ${found.model || "raw vectors"} (space ${found.embedding_space.slice(0, 12)}…).`;
  }
}

function onIndexChange() {
  const found = state.indexes.find((i) => i.name === indexName());
  if (found && found.model && state.models.some((m) => m.ref === found.model)) {
    $("model-select").value = found.model; // the index's own model: its vectors live in that space
    renderModelInfo();
  }
  renderIndexInfo();
  state.projection = null;
}

async function refreshIndexes() {
  const stats = await getJson("/index/stats");
  state.indexes = stats.indexes;
  const list = $("index-list");
  list.replaceChildren(...state.indexes.map((i) => Object.assign(document.createElement("option"), { value: i.name })));
  renderIndexInfo();
}

async function init() {
  $("templates-input").value = DEFAULT_TEMPLATES;
  $("labels-input").value = DEFAULT_LABELS;
  try {
    const [config, models, , sets] = await Promise.all([getJson("/page/config"), getJson("/models"),
      refreshIndexes(), getJson("/label_sets")]);
    state.config = config;
    state.models = models.models;
    const select = $("model-select");
    select.replaceChildren(...state.models.map((m) => {
      const option = document.createElement("option");
      option.value = m.ref;
      option.textContent = `${m.ref} · ${m.method} · ${m.embed_dim}-d${m.clip ? " · CLIP" : ""}`;
      return option;
    }));
    const preferred = state.models.find((m) => m.aliases.includes(config.default_model) || m.ref.split("@")[0] === config.default_model);
    if (preferred) select.value = preferred.ref;
    if (sets.label_sets.length) {
      $("labels-input").value = sets.label_sets[0].labels.join("\n");
      $("templates-input").value = sets.label_sets[0].templates.join("\n");
    }
    $("key-hint").textContent = config.api_key_required ? "(required by this server)" : "(not needed here)";
    $("index-input").value = state.indexes.length ? state.indexes[0].name : "default";
    onIndexChange();
    renderModelInfo();
    document.body.dataset.ready = "true";
  } catch (err) {
    showError($("setup-message"), err);
  }
}

// -- queries -----------------------------------------------------------------------------------------
function sourceOf(query) {
  return query.kind === "image" ? { images: [query.dataUri] } : { texts: [query.text] };
}

function renderNeighbours(hits) {
  const list = $("neighbours");
  list.replaceChildren();
  hits.forEach((hit, rank) => {
    const li = document.createElement("li");
    li.dataset.id = hit.id;
    li.dataset.score = String(hit.score);
    const meta = hit.metadata || {};
    const label = meta.label !== undefined ? ` labelled ${meta.label}` : "";
    if (typeof meta.thumbnail === "string" && meta.thumbnail.startsWith("data:image/")) {
      const img = document.createElement("img");
      img.className = "thumb";
      img.src = meta.thumbnail;
      img.alt = `Neighbour ${rank + 1}: ${hit.id}${label}, similarity ${hit.score.toFixed(3)}`;
      li.append(img);
    } else {
      const ph = document.createElement("div");
      ph.className = "thumb placeholder";
      ph.setAttribute("role", "img");
      ph.setAttribute("aria-label", `Neighbour ${rank + 1}: ${hit.id}${label} (no thumbnail stored)`);
      ph.textContent = "no thumbnail";
      li.append(ph);
    }
    const head = document.createElement("div");
    head.className = "nn-head";
    const id = Object.assign(document.createElement("span"), { className: "nn-id", textContent: hit.id });
    const score = Object.assign(document.createElement("span"), { className: "nn-score", textContent: hit.score.toFixed(3) });
    score.title = "similarity score";
    head.append(id, score);
    li.append(head);
    const dl = document.createElement("dl");
    dl.className = "nn-meta";
    for (const [key, value] of Object.entries(meta)) {
      if (key === "thumbnail") continue;
      const div = document.createElement("div");
      div.textContent = `${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`;
      dl.append(div);
    }
    li.append(dl);
    list.append(li);
  });
}

async function search(query, generation) {
  const status = $("nn-status");
  showError($("nn-message"), null);
  status.textContent = "Searching…";
  delete $("neighbours").dataset.query;  // it names the outcome on screen: none until this search answers
  const model = selectedModel();
  try {
    const body = { index: indexName(), k: k(), ...sourceOf(query) };
    if (model) body.model = model.ref;
    const out = await postJson("/search", body);
    if (generation !== state.generation) return;
    renderNeighbours(out.results[0]);
    status.textContent = `${out.results[0].length} nearest in “${out.index}” by ${query.kind === "image" ? "image" : `text “${query.text}”`} ` +
      `(${out.metric} similarity, higher is closer).`;
    $("neighbours").dataset.query = query.kind;
  } catch (err) {
    if (generation !== state.generation) return;
    $("neighbours").replaceChildren();
    if (err instanceof ApiError && err.status === 404 && /no index named/i.test(err.message)) {
      // A first visit: nothing has been indexed yet. That is a state to explain, not an error.
      status.textContent = `Nothing to search yet: the index “${indexName()}” is empty. Add this image to it ` +
        "below (“Add to index”), a few more, and search again; or pick an existing index from the list.";
      $("neighbours").dataset.query = "empty-index";
      return;
    }
    status.textContent = "No neighbours.";
    showError($("nn-message"), err);
  }
}

function renderBars(results) {
  const list = $("label-bars");
  list.replaceChildren();
  for (const { label, score } of results) {
    const li = document.createElement("li");
    li.dataset.label = label;
    li.dataset.score = String(score);
    const name = Object.assign(document.createElement("span"), { className: "bar-label", textContent: label });
    const bar = Object.assign(document.createElement("span"), { className: "bar" });
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.style.width = `${(100 * score).toFixed(1)}%`;
    bar.append(fill);
    const value = Object.assign(document.createElement("span"), { className: "bar-value", textContent: `${(100 * score).toFixed(1)}%` });
    li.append(name, bar, value);
    list.append(li);
  }
}

async function classify(generation) {
  const query = state.query;
  showError($("zs-message"), null);
  const model = selectedModel();
  if (!query || query.kind !== "image") { $("zs-status").textContent = "Zero-shot labels are for an image query."; return; }
  if (!model || !model.clip) { $("label-bars").replaceChildren(); $("zs-status").textContent = "Zero-shot labels need a CLIP model."; return; }
  const labels = splitList($("labels-input").value, true);
  const templates = splitList($("templates-input").value, false);
  $("zs-status").textContent = "Classifying…";
  try {
    const body = { images: [query.dataUri], model: model.ref, candidate_labels: labels, top_k: labels.length || 1 };
    if (templates.length) body.hypothesis_templates = templates;
    const out = await postJson("/classify", body);
    if (generation !== state.generation) return;
    renderBars(out.results[0]);
    $("zs-status").textContent = `Softmax over ${labels.length} labels × ${out.templates.length} template(s), ${out.model}.`;
  } catch (err) {
    if (generation !== state.generation) return;
    $("label-bars").replaceChildren();
    $("zs-status").textContent = "No labels.";
    showError($("zs-message"), err);
  }
}

async function runQuery(query) {
  state.query = query;
  state.generation += 1;
  const generation = state.generation;
  await Promise.all([search(query, generation), query.kind === "image" ? classify(generation) : Promise.resolve()]);
  if (!$("scatter-wrap").hidden) await showSpace();
}

async function onFile(file) {
  if (!file) return;
  for (const id of ["query-message", "nn-message", "zs-message", "add-message"]) showError($(id), null);
  $("add-status").textContent = "";
  const figure = $("preview-figure");
  const preview = $("query-preview");
  figure.hidden = true;
  const limit = state.config.max_request_bytes;
  if (file.size * 4 / 3 > limit) { // sent as base64 JSON: 4/3 of the file
    showError($("query-message"), new ApiError(413, "too_large", `${file.name} is ${(file.size / 1048576).toFixed(1)} MB; ` +
      `this server accepts requests up to ${(limit / 1048576).toFixed(1)} MB (about ${(limit * 0.75 / 1048576).toFixed(1)} MB of image).`));
    return;
  }
  const head = new Uint8Array(await file.slice(0, 65536).arrayBuffer());
  const size = headerSize(head);
  const dataUri = await readDataUrl(file);
  const tooBig = size && size.width * size.height > state.config.max_image_pixels;
  $("query-name").textContent = `${file.name}${size ? ` · ${size.width}×${size.height}` : ""}${tooBig ? " · too large to preview" : ""}`;
  if (!tooBig) {
    preview.onerror = () => { preview.hidden = true; };
    preview.hidden = false;
    preview.src = dataUri;
    preview.alt = `Your query image, ${file.name}`;
  } else {
    preview.hidden = true;
  }
  figure.hidden = false;
  $("add-id").value = file.name.replace(/\.[^.]+$/, "").replace(/[^A-Za-z0-9._-]+/g, "-").slice(0, 64) || "image";
  await runQuery({ kind: "image", file, dataUri, name: file.name, size, tooBig });
}

// -- adding ------------------------------------------------------------------------------------------
async function onAdd(event) {
  event.preventDefault();
  const query = state.query;
  showError($("add-message"), null);
  $("add-status").textContent = "";
  if (!query || query.kind !== "image") { $("add-status").textContent = "Choose an image first."; return; }
  const metadata = { source: "page", filename: query.name };
  const label = $("add-label").value.trim();
  if (label) metadata.label = label;
  try {
    if (!query.tooBig) metadata.thumbnail = await thumbnail(query.file);
  } catch { /* not decodable here: the server's answer below says why */ }
  const model = selectedModel();
  const body = { index: indexName(), ids: [$("add-id").value.trim()], images: [query.dataUri], metadata: [metadata] };
  if (model) body.model = model.ref;
  $("add-status").textContent = "Adding…";
  try {
    const out = await postJson("/index/add", body, $("api-key").value.trim());
    $("add-status").textContent = `${out.added ? "Added" : "Replaced"} “${body.ids[0]}” in “${out.index}”: ${out.count} item(s) now.`;
    $("add-status").className = "hint ok";
    await refreshIndexes();
    state.projection = null;
    if (!$("scatter-wrap").hidden) await showSpace();
  } catch (err) {
    $("add-status").textContent = "";
    showError($("add-message"), err);
  }
}

// -- embedding space ---------------------------------------------------------------------------------
async function thumbnailOf(id) {
  if (state.thumbs.has(id)) return state.thumbs.get(id);
  const pending = postJson("/index/get", { index: state.projection.index, ids: [id] })
    .then((out) => {
      const uri = out.items[0] ? out.items[0].metadata.thumbnail : null;
      return typeof uri === "string" && uri.startsWith("data:image/") ? uri : null; // never fetch a URL from metadata
    })
    .catch(() => null);
  state.thumbs.set(id, pending);
  return pending;
}

function colourFields(metadata) {
  const counts = new Map();
  for (const meta of metadata) {
    for (const [key, value] of Object.entries(meta)) {
      if (["string", "number", "boolean"].includes(typeof value)) {
        if (!counts.has(key)) counts.set(key, new Set());
        counts.get(key).add(String(value));
      }
    }
  }
  return [...counts.entries()].filter(([, values]) => values.size <= 20 && values.size >= 1).map(([key]) => key);
}

function applyColours() {
  const p = state.projection;
  if (!p) return;
  const field = $("colour-by").value;
  const values = p.points.metadata.map((m) => (field && m[field] !== undefined && m[field] !== null ? String(m[field]) : null));
  const categories = [...new Set(values.filter((v) => v !== null))].sort();
  // values that are colour names ("red", "cyan") are drawn in that colour; anything else gets the palette
  const named = categories.length > 0 && categories.every((c) => /^[a-z]+$/i.test(c) && CSS.supports("color", c));
  const colourOf = new Map(categories.map((c, i) => [c, named ? c : PALETTE[i % PALETTE.length]]));
  scatter.setColours(values.map((v) => (v === null ? MISSING : colourOf.get(v))));
  const legend = $("legend");
  legend.replaceChildren();
  const item = (swatchClass, colour, text) => {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = swatchClass;
    if (colour) sw.style.background = colour;
    sw.setAttribute("aria-hidden", "true");
    if (swatchClass.includes("query")) sw.textContent = "★";
    li.append(sw, document.createTextNode(text));
    legend.append(li);
  };
  if (categories.length) {
    legend.append(Object.assign(document.createElement("li"), { className: "legend-title", textContent: `${field}:` }));
  }
  for (const c of categories) item("swatch", colourOf.get(c), c);
  if (values.some((v) => v === null)) item("swatch", MISSING, field ? `no ${field}` : "items");
  if (p.query) item("swatch query", null, "your query");
}

async function showSpace() {
  const name = indexName();
  const method = $("proj-method").value;
  showError($("space-message"), null);
  $("space-status").textContent = method === "tsne" ? "Fitting t-SNE on the server (can take a while)…" : "Projecting…";
  const body = { index: name, method };
  const query = state.query;
  const model = selectedModel();
  if (query && !(query.kind === "image" && query.tooBig)) Object.assign(body, sourceOf(query));
  if (model) body.model = model.ref;
  let out;
  try {
    out = await postJson("/index/projection", body);
  } catch (err) {
    if (body.images || body.texts) { // the query may be what failed: show the map without it, and say why
      delete body.images; delete body.texts;
      try { out = await postJson("/index/projection", body); showError($("space-message"), err); } catch (err2) { err = err2; }
    }
    if (!out) { showError($("space-message"), err); $("space-status").textContent = "No map."; return; }
  }
  state.projection = out;
  state.thumbs = new Map();
  const wrap = $("scatter-wrap");
  wrap.hidden = false;
  const select = $("colour-by");
  const previous = select.value;
  const fields = colourFields(out.points.metadata);
  select.replaceChildren(Object.assign(document.createElement("option"), { value: "", textContent: "nothing" }),
    ...fields.map((f) => Object.assign(document.createElement("option"), { value: f, textContent: f })));
  select.value = fields.includes(previous) ? previous : fields.includes("label") ? "label" : fields[0] || "";
  scatter.setData(out.points, [], out.query);
  $("scatter").dataset.method = out.method;
  if (out.query) $("scatter").dataset.placement = out.query.placement;
  applyColours();
  const where = !out.query ? "" : out.query.placement === "projected"
    ? " The star is your query, projected with the same fitted PCA."
    : ` The star is your query, placed at its nearest neighbour (${out.query.nearest_id}): t-SNE has no map for new points.`;
  const variance = out.explained_variance ? ` Axes explain ${(100 * out.explained_variance[0]).toFixed(0)}% and ${(100 * out.explained_variance[1]).toFixed(0)}% of the variance.` : "";
  $("space-status").textContent = `${out.method === "tsne" ? "t-SNE" : "PCA"} of ${out.points.ids.length}${out.sampled ? ` (a sample of ${out.total})` : ""} ` +
    `item(s) of “${out.index}”${out.cached ? " (cached)" : ""}.${variance}${where}`;
  $("scatter").setAttribute("aria-label", `Scatter plot of ${out.points.ids.length} embeddings of index ${out.index}` +
    ` by ${out.method}${out.query ? ", with your query marked by a star" : ""}. Use N and P to read the points.`);
}

// -- events ------------------------------------------------------------------------------------------
function bind() {
  $("file-input").addEventListener("change", (e) => onFile(e.target.files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); onFile(e.dataTransfer.files[0]); });
  $("text-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text-input").value.trim();
    if (text) runQuery({ kind: "text", text });
  });
  $("labels-form").addEventListener("submit", (e) => { e.preventDefault(); classify(state.generation); });
  $("add-form").addEventListener("submit", onAdd);
  $("model-select").addEventListener("change", () => { renderModelInfo(); if (state.query) runQuery(state.query); });
  $("index-input").addEventListener("change", () => { onIndexChange(); if (state.query) runQuery(state.query); });
  $("space-button").addEventListener("click", showSpace);
  $("proj-method").addEventListener("change", () => { if (!$("scatter-wrap").hidden) showSpace(); });
  $("colour-by").addEventListener("change", applyColours);
  $("zoom-in").addEventListener("click", () => scatter.zoomCentre(1.25));
  $("zoom-out").addEventListener("click", () => scatter.zoomCentre(0.8));
  $("zoom-reset").addEventListener("click", () => scatter.reset());
}

bind();
init();

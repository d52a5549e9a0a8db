// UMR search page: plain JS, no build step. Talks to the same server's /v1 API.
"use strict";

const $ = (id) => document.getElementById(id);
let apiKey = sessionStorage.getItem("umr-api-key") || "";

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey) headers["Authorization"] = "Bearer " + apiKey;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    $("key-section").hidden = false;
    $("apikey").focus();
  }
  return response;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || JSON.stringify(body);
  } catch (e) {
    return "HTTP " + response.status;
  }
}

async function loadStats() {
  const r = await api("/v1/stats");
  if (!r.ok) {
    $("stats").textContent = "No collection: " + (await errorText(r));
    return;
  }
  const s = await r.json();
  $("stats").textContent = `${s.documents} document(s), ${s.records} page(s) in “${s.collection}” · model ${s.embedder}`
    + (s.reranker ? ` · reranker ${s.reranker}` : " · no reranker");
  $("rerank").disabled = !s.reranker;
}

function fileAsDataUri(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// Images go through fetch so that an API key is sent; the <img> gets a blob: URL.
async function loadImage(img, url) {
  const r = await api(url);
  if (!r.ok) throw new Error(await errorText(r));
  const blob = await r.blob();
  await new Promise((resolve, reject) => {
    img.onload = resolve;
    img.onerror = () => reject(new Error("image did not decode"));
    img.src = URL.createObjectURL(blob);
  });
}

function openViewer(hit) {
  const dialog = $("viewer");
  $("viewer-title").textContent = `${hit.name}, page ${hit.page}`;
  const img = $("viewer-image");
  img.alt = `Page ${hit.page} of ${hit.name} at full size`;
  loadImage(img, hit.image_url).catch((e) => { $("viewer-title").textContent += " (" + e.message + ")"; });
  dialog.showModal();
  $("viewer-close").focus();
}

function renderHit(hit, rank) {
  const li = document.createElement("li");
  li.className = "hit";
  if (hit.image_url) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "thumb";
    button.setAttribute("aria-label", `Open page ${hit.page} of ${hit.name} at full size`);
    const img = document.createElement("img");
    img.alt = `Page ${hit.page} of ${hit.name}`;
    img.loading = "eager";
    button.appendChild(img);
    button.addEventListener("click", () => openViewer(hit));
    li.appendChild(button);
    loadImage(img, hit.thumbnail_url).catch(() => { img.alt += " (image unavailable)"; });
  }
  const meta = document.createElement("p");
  meta.className = "meta";
  const pages = hit.page_count ? ` of ${hit.page_count}` : "";
  const score = hit.rerank_score !== null && hit.rerank_score !== undefined
    ? `rerank ${hit.rerank_score.toFixed(3)} · vector ${hit.vector_score.toFixed(3)}`
    : `score ${hit.score.toFixed(3)}`;
  meta.innerHTML = "";
  const strong = document.createElement("strong");
  strong.textContent = `${rank}. ${hit.name}`;
  meta.appendChild(strong);
  meta.appendChild(document.createElement("br"));
  const detail = document.createElement("span");
  detail.className = "score";
  detail.textContent = `page ${hit.page}${pages} · ${score}`;
  meta.appendChild(detail);
  meta.title = hit.source;
  li.appendChild(meta);
  if (hit.snippet) {
    const p = document.createElement("p");
    p.className = "snippet";
    p.textContent = hit.snippet;
    li.appendChild(p);
  }
  return li;
}

async function search(event) {
  event.preventDefault();
  const status = $("search-status");
  const text = $("q").value.trim();
  const file = $("qimage").files[0];
  if (!text && !file) {
    status.textContent = "Type a query or choose an image.";
    $("q").focus();
    return;
  }
  const body = { k: Number($("k").value) || 8, rerank: $("rerank").checked };
  if (text) body.query = text;
  if (file) body.image = await fileAsDataUri(file);
  status.textContent = "Searching…";
  status.classList.remove("error");
  const r = await api("/v1/search", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const list = $("results");
  list.replaceChildren();
  if (!r.ok) {
    status.textContent = "Search failed: " + (await errorText(r));
    status.classList.add("error");
    return;
  }
  const data = await r.json();
  data.results.forEach((hit, i) => list.appendChild(renderHit(hit, i + 1)));
  status.textContent = `${data.results.length} result(s)${data.reranked ? ", reranked" : ""} in ${data.seconds.toFixed(2)} s`;
}

async function upload(event) {
  event.preventDefault();
  const files = $("files").files;
  const status = $("upload-status");
  const bar = $("upload-progress");
  status.classList.remove("error");
  if (!files.length) {
    status.textContent = "Choose PDFs or images first.";
    $("files").focus();
    return;
  }
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  bar.value = 0;
  status.textContent = `Uploading ${files.length} file(s)…`;
  const r = await api("/v1/documents", { method: "POST", body: form });
  if (!r.ok) {
    status.textContent = "Upload failed: " + (await errorText(r));
    status.classList.add("error");
    return;
  }
  let job = (await r.json()).job;
  while (job.status === "queued" || job.status === "running") {
    bar.value = job.progress;
    status.textContent = `Indexing: ${job.pages_done} of ${job.pages_total} page(s)…`;
    await new Promise((res) => setTimeout(res, 400));
    const jr = await api("/v1/jobs/" + job.id);
    if (!jr.ok) { status.textContent = "Lost the job: " + (await errorText(jr)); return; }
    job = await jr.json();
  }
  bar.value = job.status === "done" ? 1 : bar.value;
  if (job.status === "done") {
    const failed = job.failed.length ? `; ${job.failed.length} file(s) failed: ` + job.failed.map((f) => f.reason).join("; ") : "";
    status.textContent = `Indexed: ${job.pages_added} page(s) added, ${job.pages_skipped} already present${failed}`;
    if (job.failed.length) status.classList.add("error");
  } else {
    status.textContent = "Indexing failed: " + job.error;
    status.classList.add("error");
  }
  $("files").value = "";
  loadStats();
}

function setupDrop() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    $("files").files = e.dataTransfer.files;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", (e) => search(e).catch((err) => {
    $("search-status").textContent = "Search failed: " + err.message;
  }));
  $("upload-form").addEventListener("submit", (e) => upload(e).catch((err) => {
    $("upload-status").textContent = "Upload failed: " + err.message;
  }));
  $("qimage").addEventListener("change", () => { $("clear-image").hidden = !$("qimage").files.length; });
  $("clear-image").addEventListener("click", () => {
    $("qimage").value = "";
    $("clear-image").hidden = true;
    $("qimage").focus();
  });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    apiKey = $("apikey").value.trim();
    sessionStorage.setItem("umr-api-key", apiKey);
    $("key-section").hidden = true;
    loadStats();
  });
  setupDrop();
  loadStats();
});

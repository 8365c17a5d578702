// The console's own scripts: what plain forms cannot do. Every page works without
// them except the three things below, which need a browser's APIs:
//  - signing in with a key file: the key is read and used here and never sent;
//  - a bulk upload's progress bar, read from the server's progress lines;
//  - the dashboard's charts (Apache ECharts).
"use strict";

function b64(bytes) {
  let text = "";
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text);
}

function unb64(text) {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

function csrfToken() {
  const meta = document.querySelector("meta[name=csrf]");
  return meta ? meta.content : "";
}

// --- signing in with a private key file ------------------------------------------
async function keySignIn(form, event) {
  event.preventDefault();
  const error = form.querySelector("[data-key-error]");
  error.hidden = true;
  try {
    const file = form.querySelector("input[type=file]").files[0];
    const pem = await file.text();
    const body = pem.replace(/-----(BEGIN|END) PRIVATE KEY-----/g, "").replace(/\s+/g, "");
    const key = await crypto.subtle.importKey(
      "pkcs8", unb64(body), { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["sign"]);
    const challenge = await (await fetch(form.dataset.challenge, { method: "POST" })).json();
    const nonce = unb64(challenge.nonce);
    const cnonce = crypto.getRandomValues(new Uint8Array(16));
    const signed = new Uint8Array(nonce.length + cnonce.length);
    signed.set(nonce);
    signed.set(cnonce, nonce.length);
    const signature = await crypto.subtle.sign("RSASSA-PKCS1-v1_5", key, signed);
    form.elements.session.value = challenge.session;
    form.elements.cnonce.value = b64(cnonce);
    form.elements.signature.value = b64(signature);
    form.submit();
  } catch (e) {
    error.hidden = false;
  }
}

// --- bulk upload with progress ----------------------------------------------------
function bulkUpload(form, event) {
  event.preventDefault();
  const file = form.querySelector("input[type=file]").files[0];
  if (!file) return;
  const bar = document.getElementById("bulk-progress");
  const status = document.getElementById("bulk-status");
  const result = document.getElementById("bulk-result");
  const params = new URLSearchParams(new FormData(form));
  params.delete("file");
  params.delete("csrf");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", form.action + "?" + params.toString());
  xhr.setRequestHeader("X-CSRF-Token", form.elements.csrf.value);
  xhr.setRequestHeader("Content-Type", file.name.endsWith(".csv") ? "text/csv" : "application/x-ndjson");
  bar.value = 0;
  bar.hidden = false;
  result.innerHTML = "";
  let seen = 0;
  const show = (line) => {
    const message = JSON.parse(line);
    if (message.html !== undefined) {
      result.innerHTML = message.html;
    }
    if (message.percent !== undefined) {
      bar.value = message.percent;
      bar.setAttribute("aria-valuenow", String(message.percent));
    }
    if (message.status !== undefined) status.textContent = message.status;
  };
  const read = () => {
    const text = xhr.responseText;
    let end;
    while ((end = text.indexOf("\n", seen)) >= 0) {
      const line = text.slice(seen, end);
      seen = end + 1;
      if (line) show(line);
    }
  };
  xhr.onprogress = read;
  xhr.onload = read;
  xhr.onerror = () => { status.textContent = form.dataset.failed; };
  xhr.send(file);
}

// --- charts -----------------------------------------------------------------------
function drawCharts() {
  if (typeof echarts === "undefined") return;
  for (const holder of document.querySelectorAll("[data-chart]")) {
    const data = JSON.parse(document.getElementById(holder.dataset.chart).textContent);
    const chart = echarts.init(holder, null, { renderer: "svg" });
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 48, right: 16, top: 32, bottom: 32 },
      xAxis: { type: "category", data: data.labels },
      yAxis: { type: "value", minInterval: 1 },
      series: data.series.map((s) => ({ name: s.name, type: data.kind || "line", data: s.values, smooth: true })),
    });
    window.addEventListener("resize", () => chart.resize());
  }
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// A genealogy: nodes in columns (made of: left, went into: right), as the page placed them.
function drawGraphs() {
  if (typeof echarts === "undefined") return;
  const colours = { transformation: "#2f6f4f", aggregation: "#2b5797", association: "#7a4f9a", commissioning: "#8a6d1f" };
  for (const holder of document.querySelectorAll("[data-graph]")) {
    const data = JSON.parse(document.getElementById(holder.dataset.graph).textContent);
    const chart = echarts.init(holder, null, { renderer: "svg" });
    chart.setOption({
      animation: false,
      // ECharts writes a tooltip as HTML: an identifier is text, so it is escaped.
      tooltip: { formatter: (p) => escapeHtml(p.dataType === "edge" ? p.data.kind : p.data.name) },
      series: [{
        type: "graph", layout: "none", roam: true, symbolSize: 12,
        label: { show: true, position: "bottom", fontSize: 10, formatter: (p) => p.data.name.split("/").pop() },
        edgeSymbol: ["none", "arrow"], edgeSymbolSize: 7,
        data: data.nodes.map((n) => ({ ...n, itemStyle: { color: n.start ? "#b03a2e" : "#555" } })),
        links: data.links.map((l) => ({ ...l, lineStyle: { color: colours[l.kind] || "#888", width: 1.5 } })),
      }],
    });
    chart.on("click", (p) => {
      if (p.dataType === "node") window.location.href = "/console/trace/" + encodeURIComponent(p.data.name);
    });
    window.addEventListener("resize", () => chart.resize());
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const keyForm = document.getElementById("key-signin");
  if (keyForm) keyForm.addEventListener("submit", (e) => keySignIn(keyForm, e));
  const bulkForm = document.getElementById("bulk-form");
  if (bulkForm) bulkForm.addEventListener("submit", (e) => bulkUpload(bulkForm, e));
  drawCharts();
  drawGraphs();
  document.body.addEventListener("htmx:configRequest", (e) => {
    const token = csrfToken();
    if (token) e.detail.headers["X-CSRF-Token"] = token;
  });
});

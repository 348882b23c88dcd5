// condgen playground: vanilla JS against the public API (/models, /generate, /grid, /interpolate).
"use strict";

(() => {
  // Models with at most this many latent dimensions get one slider per dimension.
  const SLIDER_MAX_DIM = 8;
  const SLIDER_RANGE = 3; // sliders span ±3 standard deviations of the N(0, 1) prior
  const DEBOUNCE_MS = 60; // quiet time after the last slider move before a request goes out
  // Seeds are BigInts end to end (box, URL, JSON body): a Number is exact only up to 2^53 - 1 and
  // would round the larger seeds the API hands out.
  const MAX_SEED = 2n ** 63n - 1n;
  // The bundled zoo's flagships open first; any other repository opens on its first ready model.
  const FLAGSHIPS = ["condgen-mnist", "condgen-fashion"];

  const $ = (id) => document.getElementById(id);

  const state = {
    models: [],
    model: null, // one entry of GET /models: {name, status, reason, card, samples_url}
    mode: "seed", // "sliders" | "seed"
    z: [],
    inflight: {}, // AbortController per panel: a newer request aborts the older one
    urls: {}, // object URL per panel, revoked when replaced
    shown: {}, // per panel, the request whose answer is on screen: {path, body}
    timer: null,
  };

  // ------------------------------------------------------------------ API
  class ApiError extends Error {
    constructor(type, message, status) {
      super(message);
      this.type = type;
      this.status = status;
    }
  }

  async function errorOf(response) {
    let type = `http_${response.status}`;
    let message = response.statusText || "request failed";
    try {
      const body = await response.json();
      // The service's one error shape: {"error": {"type": ..., "message": ...}}.
      if (body && body.error && typeof body.error === "object") {
        type = body.error.type || type;
        message = body.error.message || message;
      } else if (body && typeof body.error === "string") {
        message = body.error;
      }
    } catch (_) {
      // not JSON: keep the status line
    }
    return new ApiError(type, message, response.status);
  }

  // A service configured with CONDGEN_API_KEY wants a bearer token for generation; the page asks
  // for it on the first 401 and keeps it for this tab only.
  const KEY_STORAGE = "condgen.apiKey";

  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (_) {
      return $("api-key").value;
    }
  }

  // JSON.stringify cannot write a BigInt: each is written as a marked string, then unquoted.
  const BIGINT_MARK = "\u2063bigint:";
  function toJson(value) {
    const text = JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `${BIGINT_MARK}${v}` : v));
    return text.replace(/"\u2063bigint:(\d+)"/g, "$1");
  }

  async function request(path, body, signal) {
    const init = body === undefined
      ? { headers: { Accept: "application/json" }, signal }
      : {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "image/png" },
          body: toJson(body),
          signal,
        };
    const key = apiKey();
    if (body !== undefined && key) init.headers.Authorization = `Bearer ${key}`;
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError("network_error", "the service did not answer; is it running?", 0);
    }
    if (response.status === 401) $("key-field").hidden = false;
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  // ------------------------------------------------------------------ small helpers
  function showError(id, err) {
    const box = $(id);
    if (!err) {
      box.hidden = true;
      box.textContent = "";
      return;
    }
    box.textContent = "";
    const kind = document.createElement("code");
    kind.textContent = err.type || "error";
    box.append(kind, document.createTextNode(`: ${err.message}`));
    box.hidden = false;
  }

  // 32 random bits: short enough to read out and share (any seed up to MAX_SEED can be typed).
  function randomSeed() {
    const words = new Uint32Array(1);
    crypto.getRandomValues(words);
    return BigInt(words[0]);
  }

  function gaussian() {
    // Box-Muller; 1 - u keeps log() away from 0.
    const u = 1 - Math.random();
    const v = Math.random();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  function parseSeed(text) {
    if (!/^\d{1,19}$/.test(text)) return null;
    const value = BigInt(text);
    return value <= MAX_SEED ? value : null;
  }

  function readSeed(input) {
    const value = parseSeed(input.value.trim());
    if (value === null) {
      throw new ApiError("invalid_seed", `${input.labels[0].textContent.trim()} must be a whole number from 0 to ${MAX_SEED}`, 0);
    }
    return value;
  }

  function readInt(input, min, max) {
    const value = Number(input.value);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new ApiError("invalid_value", `${input.labels[0].textContent.trim()} must be a whole number from ${min} to ${max}`, 0);
    }
    return value;
  }

  function formatSeconds(seconds) {
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return `${minutes} min`;
    return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
  }

  function formatNumber(value) {
    if (!Number.isFinite(value)) return String(value);
    return Math.abs(value) >= 1000 || Number.isInteger(value) ? value.toLocaleString("en") : value.toPrecision(4);
  }

  // Show a PNG blob in an <img>, scale it up by whole pixels, and point a download link at it.
  async function showBlob(panel, img, blob, download, filename) {
    const url = URL.createObjectURL(blob);
    const previous = state.urls[panel];
    state.urls[panel] = url;
    img.src = url;
    try {
      await img.decode();
    } catch (_) {
      // decode() rejects when a newer src replaced this one; the newer call finishes the job
    }
    if (state.urls[panel] !== url) return;
    if (previous) URL.revokeObjectURL(previous);
    img.hidden = false;
    if (panel !== "image") {
      // Grids and strips: the largest whole-pixel zoom that fits the panel, at least 1x.
      // Room in the panel, less its padding and the grid's row labels.
      const room = img.closest(".frame").clientWidth - 24 - (panel === "grid" ? 96 : 0);
      const zoom = Math.max(1, Math.min(6, Math.floor(room / img.naturalWidth), Math.floor(720 / img.naturalHeight)));
      img.style.width = `${img.naturalWidth * zoom}px`;
      img.dataset.zoom = String(zoom);
    }
    download.href = url;
    download.download = filename;
    download.setAttribute("aria-disabled", "false");
    img.dataset.renders = String(Number(img.dataset.renders || 0) + 1);
  }

  // Run one request for a panel: abort the panel's previous one, report errors in the page.
  async function run(panel, busyEl, errorId, work) {
    if (state.inflight[panel]) state.inflight[panel].abort();
    const controller = new AbortController();
    state.inflight[panel] = controller;
    busyEl.setAttribute("aria-busy", "true");
    try {
      await work(controller.signal);
      showError(errorId, null);
    } catch (err) {
      if (err.name !== "AbortError") showError(errorId, err);
    } finally {
      if (state.inflight[panel] === controller) {
        delete state.inflight[panel];
        // A debounced image request still waiting to go out keeps the image marked stale.
        if (!(panel === "image" && state.timer !== null)) busyEl.setAttribute("aria-busy", "false");
      }
    }
  }

  // ------------------------------------------------------------------ requests
  const card = () => state.model.card;
  const conditional = () => Array.isArray(card().labels);
  const labelId = () => Number($("label").value);
  const labelName = () => (conditional() ? card().labels[labelId()] : null);

  function truncation() {
    return $("truncate").checked ? Number($("truncation").value) : undefined;
  }

  function generateBody() {
    const body = { model: state.model.name };
    if (conditional()) body.label = labelId();
    if (state.mode === "sliders") {
      body.z = [state.z.map((v) => Number(v.toFixed(4)))];
    } else {
      body.seed = readSeed($("seed"));
      const t = truncation();
      if (t !== undefined) body.truncation = t;
    }
    return body;
  }

  function renderImage() {
    if (!state.model) return;
    clearTimeout(state.timer);
    state.timer = null;
    return run("image", $("stage"), "image-error", async (signal) => {
      const body = generateBody();
      const started = performance.now();
      const response = await request("/generate", body, signal);
      const blob = await response.blob();
      state.shown.image = { path: "/generate", body };
      const what = state.mode === "sliders" ? "z" : `seed-${body.seed}`;
      const label = conditional() ? `-${labelName()}` : "";
      await showBlob("image", $("image"), blob, $("download"), `${state.model.name}${label}-${what}.png`);
      $("image-placeholder").hidden = true;
      const source = state.mode === "sliders" ? "latent from the sliders" : `seed ${body.seed}`;
      $("image").alt = `${state.model.name}${conditional() ? `, label ${labelName()}` : ""}, ${source}`;
      showApi();
      const ms = Math.round(performance.now() - started);
      const image = card().image;
      $("image-meta").textContent = `${image.width}×${image.height}${image.channels === 3 ? " RGB" : ""}`;
      $("status").textContent = `${state.mode === "sliders" ? "z from sliders" : `seed ${body.seed}`} · ${ms} ms`;
      updateHash();
    });
  }

  function scheduleImage() {
    clearTimeout(state.timer);
    state.timer = setTimeout(renderImage, DEBOUNCE_MS);
    $("stage").setAttribute("aria-busy", "true");
  }

  function renderGrid() {
    if (!state.model) return;
    return run("grid", $("grid-panel"), "grid-error", async (signal) => {
      const seed = readSeed($("grid-seed"));
      const columns = readInt($("grid-columns"), 1, 16);
      const t = truncation();
      // An unconditional model has no labels: four rows of samples instead.
      const path = conditional() ? "/grid" : "/generate";
      const body = conditional() ? { model: state.model.name, seed, columns } : { model: state.model.name, seed, n: 4 * columns };
      if (t !== undefined) body.truncation = t;
      const response = await request(path, body, signal);
      $("grid-meta").textContent = conditional()
        ? `${card().labels.length} labels × ${columns} latents of seed ${seed}`
        : `${4 * columns} samples of seed ${seed}`;
      const rows = conditional() ? card().labels : [];
      const grid = $("grid");
      grid.alt = conditional()
        ? `Grid: one row per label (${rows.join(", ")}); column j uses latent j of seed ${seed}`
        : `${4 * columns} samples of seed ${seed}`;
      await showBlob("grid", grid, await response.blob(), $("grid-download"), `${state.model.name}-grid-seed-${seed}.png`);
      rowLabels(rows, card().image.height, Number(grid.dataset.zoom || 1));
      state.shown.grid = { path, body };
      showApi();
    });
  }

  // Class names beside the grid's rows, placed by the grid's geometry (2-pixel padding, as drawn
  // by the service) times the zoom.
  function rowLabels(names, cellHeight, zoom) {
    const list = $("grid-labels");
    list.textContent = "";
    list.hidden = !names.length;
    const pad = 2;
    list.style.paddingTop = `${pad * zoom}px`;
    for (const name of names) {
      const item = document.createElement("li");
      item.textContent = name;
      item.style.height = `${cellHeight * zoom}px`;
      item.style.marginBottom = `${pad * zoom}px`;
      list.append(item);
    }
  }

  function renderInterpolation() {
    if (!state.model) return;
    return run("interp", $("interp-panel"), "interp-error", async (signal) => {
      const a = readSeed($("interp-a"));
      const b = readSeed($("interp-b"));
      const steps = readInt($("interp-steps"), 2, 32);
      const body = { model: state.model.name, seeds: [a, b], steps, spherical: $("interp-slerp").checked };
      if (conditional()) body.label = labelId();
      const t = truncation();
      if (t !== undefined) body.truncation = t;
      const response = await request("/interpolate", body, signal);
      const label = conditional() ? ` at label ${labelName()}` : "";
      $("interp-meta").textContent = `seed ${a} → seed ${b}, ${steps} steps${label}`;
      await showBlob("interp", $("interp"), await response.blob(), $("interp-download"), `${state.model.name}-seeds-${a}-${b}.png`);
      state.shown.interp = { path: "/interpolate", body };
      showApi();
    });
  }

  // ------------------------------------------------------------------ use via API
  // The curl command and Python client call that give the images of a panel, from the request
  // whose answer is on screen (state.shown).
  const API_OUTPUT = { image: "image.png", grid: "grid.png", interp: "interpolation.png" };

  function shellQuote(text) {
    return `'${text.replaceAll("'", "'\\''")}'`;
  }

  function curlCommand(panel, shown) {
    const lines = [`curl -s ${location.origin}${shown.path} -H 'Content-Type: application/json' \\`];
    if (apiKey()) lines.push('  -H "Authorization: Bearer $CONDGEN_API_KEY" \\');
    lines.push(`  -d ${shellQuote(toJson(shown.body))} -o ${API_OUTPUT[panel]}`);
    return lines.join("\n");
  }

  // Python literals: JSON strings and numbers read the same in Python; BigInts as digits.
  const py = (value) => (typeof value === "bigint" ? String(value) : toJson(value));
  const labelArg = (body) => (body.label === undefined ? [] : [`label=${py(card().labels[body.label])}`]);
  const truncationArg = (body) => (body.truncation === undefined ? [] : [`truncation=${py(body.truncation)}`]);

  function clientCall(panel, shown) {
    const body = shown.body;
    let method = "generate";
    let args;
    if (panel === "image" && body.z) {
      args = [...labelArg(body), `z=[[${body.z[0].map(py).join(", ")}]]`];
    } else if (panel === "image" || shown.path === "/generate") {
      args = [...labelArg(body), `n=${body.n || 1}`, `seed=${py(body.seed)}`, ...truncationArg(body)];
    } else if (panel === "grid") {
      method = "grid";
      const labels = `labels=[${card().labels.map(py).join(", ")}]`;
      args = [labels, `columns=${body.columns}`, `seed=${py(body.seed)}`, ...truncationArg(body)];
    } else {
      method = "interpolate";
      args = [...labelArg(body), `seeds=(${body.seeds.map(py).join(", ")})`, `steps=${body.steps}`];
      if (!body.spherical) args.push("spherical=False");
      args.push(...truncationArg(body));
    }
    const key = apiKey() ? ', api_key=os.environ["CONDGEN_API_KEY"]' : "";
    const imports = apiKey() ? "import os\n\nfrom condgen import Client" : "from condgen import Client";
    const call = `Client(${py(location.origin)}${key}).${method}(${[py(body.model), ...args].join(", ")})`;
    return `${imports}\nimages = ${call}.images`;
  }

  function showApi() {
    const panel = document.querySelector('input[name="api-for"]:checked').value;
    const shown = state.shown[panel];
    $("api-curl").textContent = shown ? curlCommand(panel, shown) : "";
    $("api-python").textContent = shown ? clientCall(panel, shown) : "";
    $("api-empty").hidden = Boolean(shown);
  }

  async function copyCode(id, button) {
    const code = $(id);
    try {
      await navigator.clipboard.writeText(code.textContent);
      button.textContent = "Copied";
    } catch (_) {
      // No clipboard (a page served over plain HTTP from another host): select it for Ctrl+C.
      getSelection().selectAllChildren(code);
      button.textContent = "Selected";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  }

  // ------------------------------------------------------------------ controls
  function buildSliders(dim) {
    const box = $("sliders");
    box.textContent = "";
    state.z = new Array(dim).fill(0);
    for (let i = 0; i < dim; i += 1) {
      const row = document.createElement("div");
      row.className = "slider";
      const id = `z-${i}`;
      const label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = `z${i}`;
      const input = document.createElement("input");
      Object.assign(input, { type: "range", id, min: -SLIDER_RANGE, max: SLIDER_RANGE, step: 0.05, value: 0 });
      input.setAttribute("aria-label", `latent dimension ${i}`);
      const out = document.createElement("output");
      out.htmlFor = id;
      out.textContent = "0.00";
      input.addEventListener("input", () => {
        state.z[i] = Number(input.value);
        out.textContent = state.z[i].toFixed(2);
        scheduleImage();
      });
      row.append(label, input, out);
      box.append(row);
    }
    $("dim-note").textContent = `(${dim} dimensions)`;
  }

  function setSliders(values) {
    values.forEach((v, i) => {
      const clamped = Math.max(-SLIDER_RANGE, Math.min(SLIDER_RANGE, v));
      const input = $(`z-${i}`);
      input.value = String(clamped);
      state.z[i] = Number(input.value);
      input.nextElementSibling.textContent = state.z[i].toFixed(2);
    });
  }

  function setMode(mode) {
    state.mode = mode;
    $(`mode-${mode}`).checked = true;
    $("sliders-field").hidden = mode !== "sliders";
    $("seed-field").hidden = mode !== "seed";
  }

  function renderCard(entry) {
    const c = entry.card;
    const body = $("card-body");
    body.textContent = "";
    const title = document.createElement("p");
    const strong = document.createElement("strong");
    strong.textContent = entry.name;
    const badge = document.createElement("span");
    badge.className = entry.status === "ready" ? "badge" : "badge bad";
    badge.textContent = entry.status.replace("_", " ");
    title.append(strong, badge);
    body.append(title);
    if (!c) {
      const p = document.createElement("p");
      p.textContent = entry.reason || "No card.";
      body.append(p);
      return;
    }
    if (c.description) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = c.description;
      body.append(p);
    }
    const t = c.training;
    const facts = [
      ["Dataset", c.dataset],
      ["Kind", `${c.kind} · ${c.family}`],
      ["Image", `${c.image.channels === 3 ? "RGB" : "grey"} ${c.image.width}×${c.image.height}`],
      ["Latent", `${c.latent.dim}-D ${c.latent.prior}`],
      ["Labels", c.labels ? `${c.labels.length} classes` : "unconditional"],
      ["Loss", t ? t.loss : "—"],
      ["Epochs", t ? `${t.epochs} (${t.steps.toLocaleString("en")} steps, batch ${t.batch_size})` : "—"],
      ["Training time", t ? `${formatSeconds(t.seconds)} on ${t.device}` : "—"],
      ["Recipe", t ? t.recipe : "—"],
      ["Reproduces", c.reproduces || "—"],
      ["Version", c.version],
    ];
    const dl = document.createElement("dl");
    dl.className = "facts";
    for (const [key, value] of facts) {
      const dt = document.createElement("dt");
      dt.textContent = key;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dl.append(dt, dd);
    }
    body.append(dl);

    const metricsTitle = document.createElement("h3");
    metricsTitle.textContent = "Metrics";
    body.append(metricsTitle);
    if (c.metrics && c.metrics.length) {
      const table = document.createElement("table");
      const head = table.createTHead().insertRow();
      for (const name of ["Metric", "Value", "N"]) {
        const th = document.createElement("th");
        th.scope = "col";
        th.textContent = name;
        head.append(th);
      }
      const tbody = table.createTBody();
      for (const m of c.metrics) {
        const row = tbody.insertRow();
        const name = row.insertCell();
        name.textContent = m.name;
        // What it was measured with, in a line under the name; the full story on hover.
        if (m.feature_extractor) {
          const how = document.createElement("div");
          how.className = "how";
          how.textContent = m.feature_extractor.split(" (")[0];
          name.append(how);
        }
        row.title = [m.feature_extractor, m.reference, m.notes].filter(Boolean).join("\n");
        const value = row.insertCell();
        value.textContent = formatNumber(m.value);
        value.className = "num";
        const n = row.insertCell();
        n.textContent = m.n_samples.toLocaleString("en");
        n.className = "num";
      }
      body.append(table);
      const references = [...new Set(c.metrics.map((m) => m.reference).filter(Boolean))];
      if (references.length) {
        const note = document.createElement("p");
        note.className = "hint";
        note.textContent = `Against ${references.join("; ")}. Hover a row for how it was measured.`;
        body.append(note);
      }
    } else {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = "No metrics in this card.";
      body.append(p);
    }
    if (entry.samples_url) {
      const h = document.createElement("h3");
      h.textContent = "Samples from training";
      const img = document.createElement("img");
      img.className = "samples pixelated";
      img.src = entry.samples_url;
      img.alt = `Sample grid exported with ${entry.name}`;
      img.loading = "lazy";
      body.append(h, img);
    }
  }

  function selectModel(name, { label, seed } = {}) {
    const entry = state.models.find((m) => m.name === name);
    if (!entry) return;
    state.model = entry;
    state.shown = {};
    showApi();
    $("model").value = name;
    renderCard(entry);
    const c = entry.card;
    const hint = $("model-hint");
    if (!c || entry.status !== "ready") {
      hint.textContent = entry.reason ? `Not ready: ${entry.reason}` : "Not ready.";
      return;
    }
    hint.textContent = `${c.kind === "gan" ? "GAN" : "VAE decoder"} · ${c.dataset} · ${c.latent.dim}-D latent`;

    // Labels, by name.
    const labelSelect = $("label");
    labelSelect.textContent = "";
    if (c.labels) {
      c.labels.forEach((text, id) => {
        labelSelect.add(new Option(text === String(id) ? text : `${text} (${id})`, String(id)));
      });
      labelSelect.value = String(labelIndex(c.labels, label));
    }
    $("label-field").hidden = !c.labels;
    $("grid-title").textContent = c.labels ? "Label × z grid" : "Samples";
    $("grid-hint").hidden = !c.labels;

    // Sliders for small latents, seeds always.
    const small = c.latent.dim <= SLIDER_MAX_DIM;
    $("mode-field").hidden = !small;
    if (small) buildSliders(c.latent.dim);
    if (seed !== undefined) $("seed").value = String(seed);
    setMode(small && seed === undefined ? "sliders" : "seed");

    renderAll();
  }

  // A label from the URL: a class name (any case), else a class id; the first class otherwise.
  function labelIndex(names, label) {
    if (label === undefined) return 0;
    const byName = names.findIndex((n) => n.toLowerCase() === label.toLowerCase());
    if (byName >= 0) return byName;
    const id = /^\d+$/.test(label) ? Number(label) : -1;
    return id < names.length ? Math.max(id, 0) : 0;
  }

  // ------------------------------------------------------------------ URL hash: shareable state
  function updateHash() {
    if (!state.model) return;
    const params = new URLSearchParams({ model: state.model.name });
    if (conditional()) params.set("label", labelName());
    if (state.mode === "seed") params.set("seed", $("seed").value);
    history.replaceState(null, "", `#${params}`);
  }

  function fromHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const seed = parseSeed((params.get("seed") || "").trim());
    return {
      model: params.get("model") || undefined,
      label: params.get("label") || undefined,
      seed: seed === null ? undefined : seed,
    };
  }

  // ------------------------------------------------------------------ wiring
  function renderAll() {
    renderImage();
    renderGrid();
    renderInterpolation();
  }

  function wire() {
    $("api-key").value = apiKey();
    $("key-field").hidden = !$("api-key").value;
    $("api-key").addEventListener("change", () => {
      try {
        sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
      } catch (_) {
        // storage disabled: apiKey() reads the field instead
      }
      renderAll();
    });
    $("model").addEventListener("change", (e) => selectModel(e.target.value));
    $("label").addEventListener("change", () => {
      renderImage();
      renderInterpolation();
    });
    for (const radio of document.querySelectorAll('input[name="mode"]')) {
      radio.addEventListener("change", () => {
        setMode(radio.value);
        renderImage();
      });
    }
    $("z-random").addEventListener("click", () => {
      setSliders(state.z.map(() => gaussian()));
      renderImage();
    });
    $("z-zero").addEventListener("click", () => {
      setSliders(state.z.map(() => 0));
      renderImage();
    });
    $("seed").addEventListener("input", scheduleImage);
    $("seed-random").addEventListener("click", () => {
      $("seed").value = String(randomSeed());
      renderImage();
    });
    $("truncate").addEventListener("change", () => {
      $("truncation").disabled = !$("truncate").checked;
      renderImage();
    });
    $("truncation").addEventListener("input", () => {
      $("truncation-out").textContent = Number($("truncation").value).toFixed(2);
      scheduleImage();
    });
    $("grid-form").addEventListener("submit", (e) => {
      e.preventDefault();
      renderGrid();
    });
    $("interp-form").addEventListener("submit", (e) => {
      e.preventDefault();
      renderInterpolation();
    });
    for (const radio of document.querySelectorAll('input[name="api-for"]')) {
      radio.addEventListener("change", showApi);
    }
    // A button, not a #fragment link: the URL's fragment holds the page's state.
    $("api-jump").addEventListener("click", () => {
      $("api-for-image").checked = true;
      showApi();
      $("api-panel").scrollIntoView({ behavior: "smooth", block: "start" });
      $("api-panel").focus({ preventScroll: true });
    });
    for (const button of document.querySelectorAll("button[data-copy]")) {
      button.addEventListener("click", () => copyCode(button.dataset.copy, button));
    }
    $("interp-random").addEventListener("click", () => {
      $("interp-a").value = String(randomSeed());
      $("interp-b").value = String(randomSeed());
      renderInterpolation();
    });
  }

  async function start() {
    wire();
    const select = $("model");
    try {
      const response = await request("/models");
      state.models = (await response.json()).models;
    } catch (err) {
      select.textContent = "";
      select.add(new Option("No models", ""));
      showError("image-error", err);
      return;
    }
    select.textContent = "";
    for (const m of state.models) {
      const option = new Option(m.status === "ready" ? m.name : `${m.name} (${m.status.replace("_", " ")})`, m.name);
      option.disabled = m.status !== "ready";
      select.add(option);
    }
    select.disabled = false;
    const ready = state.models.filter((m) => m.status === "ready");
    if (!ready.length) {
      $("image-placeholder").textContent = "No model is ready: see /readyz.";
      return;
    }
    const wanted = fromHash();
    const flagship = FLAGSHIPS.map((name) => ready.find((m) => m.name === name)).find(Boolean);
    const first = ready.find((m) => m.name === wanted.model) || flagship || ready[0];
    // A label and seed from the URL apply to its model, or to the default one when it names none.
    selectModel(first.name, wanted.model === undefined || first.name === wanted.model ? wanted : {});
  }

  document.addEventListener("DOMContentLoaded", start);
})();

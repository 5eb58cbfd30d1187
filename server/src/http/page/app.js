// The store page (SPEC section 6; docs/HTTP.md, "The store page"). Plain JavaScript, no build
// step, no library: everything it shows comes from the public HTTP API with the associate's
// bearer token. It only ever sets textContent (never HTML), and the server's
// Content-Security-Policy allows no other script.
"use strict";

const STORE_KEY = "stockd.store";
const TOKEN_KEY = "stockd.token";
/** How far "nearby stores" reach, km. */
const NEARBY_RADIUS_KM = 50;
/** SKUs listed per search (the API's limit is 100). */
const SEARCH_LIMIT = 20;

const $ = (id) => document.getElementById(id);

/** The store and its definition (coordinates, channels), once set up. */
let store = null;
/** The SKU on screen: { sku, scale }. */
let current = null;
/** The Idempotency-Key of a hold whose answer never arrived: a retry reuses it. */
let pendingHold = null;

/** An API failure with the problem+json body's words. */
class ApiError extends Error {
  constructor(status, problem) {
    const what = problem && problem.detail ? problem.detail : `HTTP ${status}`;
    const code = problem && problem.code ? ` (${problem.code})` : "";
    super(`${what}${code}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` },
    options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!response.ok) {
    throw new ApiError(response.status, body);
  }
  return body;
}

function showError(error) {
  const box = $("error");
  let message = error instanceof ApiError ? error.message : `Cannot reach stockd: ${error.message}`;
  if (error instanceof ApiError && error.status === 401) {
    message += ". Check the token (Change store or token).";
  }
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

/** Runs an async handler, showing its failure. */
function guarded(handler) {
  return async (event) => {
    if (event) event.preventDefault();
    clearError();
    try { await handler(event); } catch (error) { showError(error); }
  };
}

/** Display text to base units, without floating point (SPEC section 2). */
function toBaseUnits(text, scale) {
  const match = /^(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!match) throw new Error(`"${text}" is not a quantity`);
  const decimals = match[2] || "";
  if (decimals.length > scale) throw new Error(`at most ${scale} decimals for this SKU`);
  const units = Number(match[1] + decimals.padEnd(scale, "0"));
  if (!Number.isSafeInteger(units) || units <= 0) throw new Error(`"${text}" is not a quantity`);
  return units;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function enc(s) { return encodeURIComponent(s); }

async function setUp(storeId) {
  const def = await api(`/v1/locations/${enc(storeId)}`);
  store = def;
  $("store-name").textContent = `· ${def.location}`;
  const channels = def.channels;
  $("hold-channel").value = !channels || channels.includes("pos") ? "pos" : channels[0];
  $("setup").hidden = true;
  $("main").hidden = false;
  $("change-setup").hidden = false;
  await loadPickups();
}

const onSetup = guarded(async () => {
  const storeId = $("store-input").value.trim();
  sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
  sessionStorage.setItem(STORE_KEY, storeId);
  try {
    await setUp(storeId);
  } catch (error) {
    sessionStorage.removeItem(STORE_KEY);
    throw error;
  }
});

function onChangeSetup() {
  sessionStorage.removeItem(STORE_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  store = null;
  current = null;
  $("main").hidden = true;
  $("sku").hidden = true;
  $("change-setup").hidden = true;
  $("setup").hidden = false;
  $("store-name").textContent = "";
}

const onSearch = guarded(async () => {
  const prefix = $("search-input").value.trim();
  const found = await api(`/v1/skus?prefix=${enc(prefix)}&limit=${SEARCH_LIMIT}`);
  const list = $("search-results");
  list.replaceChildren();
  $("search-more").hidden = !found.more;
  if (found.skus.length === 0) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = `No SKU starts with ${prefix}.`;
    list.appendChild(li);
    return;
  }
  for (const match of found.skus) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sku-result";
    button.dataset.sku = match.sku;
    button.textContent = match.sku;
    button.addEventListener("click", guarded(() => openSku(match)));
    li.appendChild(button);
    list.appendChild(li);
  }
  if (found.skus.length === 1 && found.skus[0].sku === prefix) {
    await openSku(found.skus[0]);
  }
});

async function openSku(match) {
  current = match;
  $("sku-id").textContent = match.sku;
  $("hold-result").hidden = true;
  $("sku").hidden = false;
  await loadAvailability();
}

async function loadAvailability() {
  const sku = enc(current.sku);
  const [here, network] = await Promise.all([
    api(`/v1/availability?sku=${sku}&at=${enc(store.location)}&channel=pos`),
    api(`/v1/availability?sku=${sku}&at=all&channel=web`),
  ]);
  const row = here.skus[0].rows[0];
  $("here-on-hand").textContent = row.balance.on_hand.display;
  $("here-reserved").textContent = row.balance.reserved.display;
  $("here-allocated").textContent = row.balance.allocated.display;
  $("here-unavailable").textContent = row.balance.unavailable.display;
  $("here-ats").textContent = row.ats_pos.display;
  $("network-ats").textContent = network.skus[0].ats.display;
  $("network-locations").textContent = String(network.skus[0].rows.length);
  await loadNearby();
}

async function loadNearby() {
  const none = $("nearby-none");
  const table = $("nearby");
  if (store.lat_e6 == null || store.lon_e6 == null) {
    none.textContent = "This store has no coordinates: nearby stores are unknown.";
    none.hidden = false;
    table.hidden = true;
    return;
  }
  const rows = await api(`/v1/nearby?sku=${enc(current.sku)}&lat_e6=${store.lat_e6}` +
    `&lon_e6=${store.lon_e6}&radius_km=${NEARBY_RADIUS_KM}&qty=1&channel=pos`);
  const others = rows.filter((r) => r.location !== store.location && r.kind === "store");
  const body = $("nearby-rows");
  body.replaceChildren();
  for (const r of others) {
    const tr = document.createElement("tr");
    tr.dataset.location = r.location;
    cell(tr, r.location);
    cell(tr, `${(r.distance_m / 1000).toFixed(1)} km`);
    cell(tr, r.ats.display, "nearby-ats");
    cell(tr, r.pickup ? "yes" : "no");
    body.appendChild(tr);
  }
  none.textContent = `No other store within ${NEARBY_RADIUS_KM} km has it.`;
  none.hidden = others.length > 0;
  table.hidden = others.length === 0;
}

function formatTime(ms) {
  return new Date(ms).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

async function loadPickups() {
  const due = await api(`/v1/locations/${enc(store.location)}/pickups?limit=100`);
  const body = $("pickups-rows");
  body.replaceChildren();
  const soon = Date.now() + 3600000;
  for (const p of due.pickups) {
    const tr = document.createElement("tr");
    tr.dataset.order = p.order;
    cell(tr, formatTime(p.deadline.ms), p.deadline.ms <= soon ? "due-soon" : "")
      .title = p.deadline.rfc3339;
    cell(tr, p.order, "pickup-order");
    cell(tr, p.lines.map((l) => `${l.sku} × ${l.qty.display}`).join(", "));
    cell(tr, p.ready_for_pickup ? "ready" : "not yet");
    body.appendChild(tr);
  }
  $("pickups-none").hidden = due.pickups.length > 0;
  $("pickups-table").hidden = due.pickups.length === 0;
}

const onHold = guarded(async () => {
  const qty = toBaseUnits($("hold-qty").value, current.scale);
  const ttl = Number($("hold-ttl").value);
  const channel = $("hold-channel").value.trim();
  const intent = JSON.stringify([current.sku, store.location, qty, ttl, channel]);
  // The same hold retried after a lost answer keeps its key and its reservation id: stockd
  // answers the original outcome instead of holding twice.
  if (!pendingHold || pendingHold.intent !== intent) {
    pendingHold = {
      intent,
      key: crypto.randomUUID(),
      reservation: `hold-${crypto.randomUUID()}`,
    };
  }
  const hold = pendingHold;
  let answer;
  try {
    answer = await api("/v1/reservations", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Idempotency-Key": hold.key },
      body: JSON.stringify({
        reservation: hold.reservation,
        channel,
        lines: [{ sku: current.sku, location: store.location, qty }],
        ttl_ms: ttl,
      }),
    });
  } catch (error) {
    // An answer (even a refusal) is final for this key; only a lost one is retried with it.
    if (error instanceof ApiError) pendingHold = null;
    throw error;
  }
  pendingHold = null;
  const until = formatTime(answer.result.expires_at.ms);
  const result = $("hold-result");
  result.textContent = `Held ${$("hold-qty").value.trim()} × ${current.sku} until ${until}. ` +
    `Reservation ${hold.reservation}`;
  result.dataset.reservation = hold.reservation;
  result.hidden = false;
  await loadAvailability();
});

function start() {
  $("setup-form").addEventListener("submit", onSetup);
  $("search-form").addEventListener("submit", onSearch);
  $("hold-form").addEventListener("submit", onHold);
  $("change-setup").addEventListener("click", onChangeSetup);
  $("pickups-refresh").addEventListener("click", guarded(loadPickups));
  const saved = sessionStorage.getItem(STORE_KEY);
  if (saved && sessionStorage.getItem(TOKEN_KEY)) {
    $("store-input").value = saved;
    guarded(() => setUp(saved))();
  }
}

document.addEventListener("DOMContentLoaded", start);

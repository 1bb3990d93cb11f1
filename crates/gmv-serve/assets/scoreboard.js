// gmv-stream gala scoreboard. Plain ES2020, no dependencies.
// Data: GET /api/snapshot once, then EventSource('/api/live') with
// `snapshot` and `alert` events (the JSON contract is ../shared/EVENTS.md;
// event ids and resuming are described in gmv-serve's src/feed.rs).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const MAX_MINUTES_KEPT = 1440;   // a full day of per-minute buckets
  const MAX_MINUTES_SHOWN = 60;
  const MIN_MINUTE_SLOTS = 20;
  const MAX_ALERTS_SHOWN = 12;

  // ---------------------------------------------------------------- formatting

  const group = (digits) => digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");

  // Exact decimal string -> {neg, int, frac}; never goes through Number.
  function parseMoney(s) {
    let str = s == null ? "0" : String(s).trim();
    let neg = false;
    if (str[0] === "-" || str[0] === "+") { neg = str[0] === "-"; str = str.slice(1); }
    let [int = "0", frac = ""] = str.split(".");
    if (!/^\d*$/.test(int) || !/^\d*$/.test(frac)) return { neg: false, int: "0", frac: "00" };
    int = int.replace(/^0+(?=\d)/, "") || "0";
    frac = (frac + "00").slice(0, Math.max(2, frac.length));
    if (neg && /^0+$/.test(int + frac)) neg = false;
    return { neg, int, frac };
  }

  function fmtMoneyExact(s, sym) {
    const m = parseMoney(s);
    return (m.neg ? "-" : "") + sym + group(m.int) + "." + m.frac;
  }

  function fmtMoneyNumber(v, sym) {
    const neg = v < 0;
    const [i, f] = Math.abs(v).toFixed(2).split(".");
    return (neg ? "-" : "") + sym + group(i) + "." + f;
  }

  function fmtInt(v) {
    if (v == null || v === "") return "0";
    if (typeof v === "string" && /^-?\d+$/.test(v)) return v[0] === "-" ? "-" + group(v.slice(1)) : group(v);
    const n = Math.round(Number(v));
    if (!Number.isFinite(n)) return "–";
    return n < 0 ? "-" + group(String(-n)) : group(String(n));
  }

  // "100000000.00" -> "¥100M"; fixed=true keeps `dp` decimals (for columns).
  // Abbreviations are approximate by nature, so Number precision is fine here.
  const UNITS = [[1e15, "Q"], [1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
  function abbrevCny(s, dp = 2, fixed = false) {
    const m = parseMoney(s);
    const v = Number(m.int + "." + m.frac);
    let out = group(m.int);
    for (let i = 0; i < UNITS.length; i++) {
      if (v < UNITS[i][0]) continue;
      let u = UNITS[i];
      let txt = (v / u[0]).toFixed(dp);
      if (Number(txt) >= 1000 && i > 0) { u = UNITS[i - 1]; txt = (v / u[0]).toFixed(dp); }
      if (!fixed && txt.includes(".")) txt = txt.replace(/\.?0+$/, "");
      const [ip, fp] = txt.split(".");
      out = group(ip) + (fp ? "." + fp : "") + u[1];
      break;
    }
    return (m.neg ? "-" : "") + "¥" + out;
  }

  const pct = (x) => (x == null || !Number.isFinite(Number(x)) ? "–" : (Number(x) * 100).toFixed(1) + "%");

  // RFC 3339 -> wall-clock parts as written (the festival's own offset).
  function clockOf(ts) {
    const m = /T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(ts || "");
    return m ? { hh: m[1], mm: m[2], ss: m[3] || "00" } : null;
  }
  const hms = (ts) => { const c = clockOf(ts); return c ? `${c.hh}:${c.mm}:${c.ss}` : "--:--:--"; };
  const hm = (ts) => { const c = clockOf(ts); return c ? `${c.hh}:${c.mm}` : "--:--"; };
  function longDate(ts) {
    const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(ts || "");
    return m ? `${Number(m[3])} ${MONTHS[Number(m[2]) - 1]} ${m[1]}` : "";
  }
  const fmtMs = (v) => (v == null || !Number.isFinite(Number(v)) ? "–" : (Number(v) < 10 ? Number(v).toFixed(1) : Math.round(Number(v))) + " ms");

  function setText(el, txt) {
    if (!el || el.textContent === txt) return;
    const grew = el.textContent.length !== txt.length;
    el.textContent = txt;
    if (grew && el.classList.contains("fit")) fit(el);
  }

  // ------------------------------------------------------------------ tweening

  const tweens = new Map(); // element id -> tween
  let rafId = 0;
  // Linear: spread over (almost) one publish interval, the counters climb at
  // a steady pace, like a meter, instead of jumping and stopping each tick.
  const ease = (t) => t;

  // Animate a monotonic counter towards `target`; print `finalText` at the end.
  function tweenTo(id, target, finalText, fmt, duration) {
    const el = $(id);
    if (!el) return;
    const cur = tweens.has(id) ? tweens.get(id).value : Number(el.dataset.value || 0);
    if (!Number.isFinite(target) || target <= cur || duration <= 0 || document.hidden) {
      // Equal, never-seen-lower (server restart) or not animatable: settle now.
      tweens.delete(id);
      el.dataset.value = String(target);
      paint(id, el, finalText);
      return;
    }
    tweens.set(id, { el, from: cur, to: target, value: cur, start: performance.now(), duration, fmt, finalText });
    if (!rafId) rafId = requestAnimationFrame(step);
    // rAF can be throttled or absent (hidden tab, headless): settle on time anyway.
    setTimeout(settleExpired, duration + 40);
  }

  function settleExpired() {
    const now = performance.now();
    for (const [id, tw] of tweens) {
      if (now - tw.start >= tw.duration) {
        tweens.delete(id);
        tw.el.dataset.value = String(tw.to);
        paint(id, tw.el, tw.finalText);
      }
    }
  }

  function step(now) {
    rafId = 0;
    for (const [id, tw] of tweens) {
      const t = Math.min(1, (now - tw.start) / tw.duration);
      if (t >= 1) {
        tweens.delete(id);
        tw.el.dataset.value = String(tw.to);
        paint(id, tw.el, tw.finalText);
      } else {
        tw.value = Math.max(tw.value, tw.from + (tw.to - tw.from) * ease(Math.max(0, t)));
        paint(id, tw.el, tw.fmt(tw.value));
      }
    }
    if (tweens.size) rafId = requestAnimationFrame(step);
  }

  function paint(id, el, txt) {
    setText(el, txt);
  }

  // Shrink a `.fit` element's font (CSS var --fs, in layout units) so its text
  // stays on one line inside its box, whatever the figure's length.
  function fit(el) {
    if (!el || !el.classList.contains("fit")) return;
    el.style.removeProperty("--fs");
    const base = parseFloat(getComputedStyle(el).getPropertyValue("--fs"));
    const avail = el.clientWidth;
    const need = el.scrollWidth;
    if (base > 0 && avail > 0 && need > avail * 0.98) {
      el.style.setProperty("--fs", (base * (avail * 0.96) / need).toFixed(3));
    }
  }
  const fitAll = () => document.querySelectorAll(".fit").forEach(fit);

  // --------------------------------------------------------------------- state

  let last = null;            // last applied snapshot
  let lastRecvAt = 0;         // performance.now() of the last snapshot received
  let publishMs = 500;
  let esReconnecting = false;
  const minutes = new Map();  // epoch ms -> {label, gmv, mobile}
  let liveMinute = null;
  const seenAlerts = new Set();
  let ladderCounts = new Map();

  function animMs() { return Math.max(0, Math.min(1500, publishMs * 0.9)); }

  function acceptable(s) {
    if (!s || typeof s !== "object") return false;
    if (!last) return true;
    const seq = Number(s.seq), lastSeq = Number(last.seq);
    if (!(seq < lastSeq)) return true;
    // A lower seq is either a stale response (ignore) or a restarted server (newer as_of).
    const a = Date.parse(s.as_of), b = Date.parse(last.as_of);
    return Number.isFinite(a) && Number.isFinite(b) && a > b;
  }

  function onSnapshot(s) {
    lastRecvAt = performance.now();
    if (!acceptable(s)) return;
    if (Number(s.publish_interval_ms) > 0) publishMs = Number(s.publish_interval_ms);
    const restarted = last && Number(s.seq) < Number(last.seq);
    last = s;
    window.__lastSnapshot = s;
    document.body.dataset.seq = String(s.seq);
    if (restarted) minutes.clear();
    render(s);
    updateConnection();
  }

  // -------------------------------------------------------------------- render

  function render(s) {
    const d = animMs();
    tweenTo("gmv-cny", Number(s.gmv_cny ?? 0), fmtMoneyExact(s.gmv_cny, "¥"), (v) => fmtMoneyNumber(v, "¥"), d);
    tweenTo("gmv-usd", Number(s.gmv_usd ?? 0), fmtMoneyExact(s.gmv_usd, "US$"), (v) => fmtMoneyNumber(v, "US$"), d);
    tweenTo("transactions", Number(s.transactions ?? 0), fmtInt(s.transactions), (v) => fmtInt(Math.floor(v)), d);

    setText($("current-tps"), fmtInt(s.current_tps));
    setText($("peak-tps"), fmtInt(s.peak_tps));
    setText($("peak-second"), s.peak_second ? hms(s.peak_second) : "--:--:--");
    setText($("mobile-share"), pct(s.mobile_share));
    const share = Math.max(0, Math.min(1, Number(s.mobile_share) || 0));
    $("mobile-share-bar").style.width = (share * 100).toFixed(2) + "%";
    setText($("merchants"), fmtInt(s.merchants));

    setText($("festival-date"), longDate((s.window && s.window.start) || s.watermark));
    setText($("watermark"), s.watermark ? hms(s.watermark) : "--:--:--");

    // No samples yet (or a source that does not measure): say so, not "0 ms".
    const lat = s.latency_ms || {};
    const measured = Number(lat.count) > 0;
    setText($("lat-p50"), measured ? fmtMs(lat.p50) : "–");
    setText($("lat-p99"), measured ? fmtMs(lat.p99) : "–");
    setText($("lat-p999"), measured ? fmtMs(lat.p999) : "–");
    const acc = s.accounting || {};
    setText($("counted"), acc.counted == null ? "–" : fmtInt(acc.counted));
    const rej = s.rejected || {};
    const rejTotal = acc.rejected != null ? acc.rejected
      : Object.values(rej).reduce((a, b) => a + (Number(b) || 0), 0);
    setText($("rejected"), fmtInt(rejTotal));
    $("rejected").title = Object.entries(rej).map(([k, v]) => `${k.replace(/_/g, " ")}: ${v}`).join(", ");
    setText($("seq-label"), String(s.seq));

    renderLadder(s.thresholds || []);
    renderTop(s.top_merchants || []);
    mergeMinutes(s.recent_minutes || []);
    renderChart();
  }

  function renderLadder(thresholds) {
    const ol = $("threshold-ladder");
    const rows = thresholds
      .map((t) => ({ cny: String(t.cny), m: parseMoney(t.cny), merchants: Number(t.merchants) || 0 }))
      .sort((a, b) => (a.m.int.length - b.m.int.length) || (a.m.int < b.m.int ? -1 : a.m.int > b.m.int ? 1 : 0));
    if (!rows.length) {
      ol.innerHTML = '<li class="empty-note">No thresholds configured</li>';
      ladderCounts = new Map();
      return;
    }
    const max = Math.max(1, ...rows.map((r) => r.merchants));
    const keys = rows.map((r) => r.cny).join("|");
    if (ol.dataset.keys !== keys) {
      ol.textContent = "";
      for (const r of rows) {
        const li = document.createElement("li");
        li.className = "rung";
        li.dataset.cny = r.cny;
        li.innerHTML = '<span class="rung-label"></span><span class="rung-bar"><span class="rung-fill"></span></span>' +
          '<span class="rung-count"><b></b><small>merchants</small></span>';
        li.querySelector(".rung-label").textContent = abbrevCny(r.cny);
        ol.appendChild(li);
      }
      ol.dataset.keys = keys;
    }
    const next = new Map();
    rows.forEach((r, i) => {
      const li = ol.children[i];
      const label = abbrevCny(r.cny);
      li.dataset.merchants = String(r.merchants);
      li.setAttribute("aria-label", `${label}: ${fmtInt(r.merchants)} merchants`);
      li.title = `${fmtMoneyExact(r.cny, "¥")}: ${fmtInt(r.merchants)} merchants`;
      setText(li.querySelector(".rung-count b"), fmtInt(r.merchants));
      // log scale so that rare top tiers stay visible next to the first rung
      const w = r.merchants > 0 ? Math.max(2, (Math.log10(1 + r.merchants) / Math.log10(1 + max)) * 100) : 0;
      li.querySelector(".rung-fill").style.width = w.toFixed(2) + "%";
      const prev = ladderCounts.get(r.cny);
      if (prev != null && r.merchants > prev) {
        li.classList.remove("bump");
        void li.offsetWidth; // restart the animation
        li.classList.add("bump");
      }
      next.set(r.cny, r.merchants);
    });
    ladderCounts = next;
  }

  function renderTop(list) {
    const ol = $("top-merchants");
    if (!list.length) {
      if (!ol.querySelector(".empty-note")) ol.innerHTML = '<li class="empty-note">Waiting for sales…</li>';
      return;
    }
    const top = list.slice(0, 10);
    const max = Math.max(1, ...top.map((m) => Number(m.gmv_cny) || 0));
    const frag = document.createDocumentFragment();
    top.forEach((m, i) => {
      const li = document.createElement("li");
      li.className = "top-row";
      li.dataset.merchant = m.merchant_id;
      li.title = `${m.merchant_id}: ${fmtMoneyExact(m.gmv_cny, "¥")} · ${fmtInt(m.transactions)} transactions`;
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = ((Number(m.gmv_cny) || 0) / max * 100).toFixed(2) + "%";
      li.appendChild(fill);
      for (const [cls, txt] of [["top-rank", String(i + 1)], ["top-id", String(m.merchant_id)],
        ["top-gmv", abbrevCny(m.gmv_cny, 2, true)], ["top-share", pct(m.mobile_share)]]) {
        const span = document.createElement("span");
        span.className = cls;
        span.textContent = txt;
        li.appendChild(span);
      }
      frag.appendChild(li);
    });
    ol.textContent = "";
    ol.appendChild(frag);
  }

  // ------------------------------------------------------------- minute chart

  function mergeMinutes(recent) {
    let newest = null;
    for (const r of recent) {
      const t = Date.parse(r.minute);
      if (!Number.isFinite(t)) continue;
      const key = Math.floor(t / 60000) * 60000;
      minutes.set(key, { label: hm(r.minute), gmv: Number(r.gmv_cny) || 0, mobile: Number(r.mobile_gmv_cny) || 0 });
      if (newest === null || key > newest) newest = key;
    }
    if (newest !== null) liveMinute = newest;
    if (minutes.size > MAX_MINUTES_KEPT) {
      const keys = [...minutes.keys()].sort((a, b) => a - b);
      for (const k of keys.slice(0, minutes.size - MAX_MINUTES_KEPT)) minutes.delete(k);
    }
  }

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function labelFor(key) {
    const known = minutes.get(key);
    if (known) return known.label;
    // derive from a known minute so we keep the festival's offset
    for (const [k, v] of minutes) {
      const [h, m] = v.label.split(":").map(Number);
      if (!Number.isFinite(h)) break;
      const total = (((h * 60 + m + Math.round((key - k) / 60000)) % 1440) + 1440) % 1440;
      return String(Math.floor(total / 60)).padStart(2, "0") + ":" + String(total % 60).padStart(2, "0");
    }
    return "";
  }

  function svg(tag, attrs, parent) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const k in attrs) el.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(el);
    return el;
  }

  function renderChart() {
    const host = $("minute-chart");
    const W = Math.max(100, Math.round(host.clientWidth));
    const H = Math.max(60, Math.round(host.clientHeight));
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "GMV per minute" });
    const defs = svg("defs", {}, root);
    for (const [id, a, b] of [["mobile-grad", "#ffc94d", "#ff5a1f"], ["live-grad", "#fff1c9", "#ffb020"]]) {
      const g = svg("linearGradient", { id, x1: 0, y1: 0, x2: 0, y2: 1 }, defs);
      svg("stop", { offset: "0", "stop-color": a }, g);
      svg("stop", { offset: "1", "stop-color": b }, g);
    }

    const keys = [...minutes.keys()].sort((a, b) => a - b);
    const fs = parseFloat(getComputedStyle(host).fontSize) || 16;
    const padL = fs * 4.2, padR = fs * 0.4, padT = fs * 0.6, padB = fs * 1.8;
    const plotW = W - padL - padR, plotH = H - padT - padB;

    if (!keys.length) {
      const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, root);
      t.textContent = "Waiting for the first minute of sales…";
      host.replaceChildren(root);
      return;
    }

    const newest = keys[keys.length - 1];
    const span = Math.round((newest - keys[0]) / 60000) + 1;
    const slots = Math.max(MIN_MINUTE_SLOTS, Math.min(MAX_MINUTES_SHOWN, span));
    const first = span > MAX_MINUTES_SHOWN ? newest - (MAX_MINUTES_SHOWN - 1) * 60000 : keys[0];

    let maxV = 0;
    for (let i = 0; i < slots; i++) {
      const v = minutes.get(first + i * 60000);
      if (v) maxV = Math.max(maxV, v.gmv, v.mobile);
    }
    const top = niceCeil(maxV);
    const y = (v) => padT + plotH - (v / top) * plotH;

    const gridN = 4;
    for (let i = 0; i <= gridN; i++) {
      const v = (top * i) / gridN;
      const yy = Math.round(y(v)) + 0.5;
      svg("line", { x1: padL, x2: W - padR, y1: yy, y2: yy, class: "grid" }, root);
      const t = svg("text", { x: padL - fs * 0.5, y: yy + fs * 0.3, "text-anchor": "end", class: "axis-label" }, root);
      t.textContent = i === 0 ? "0" : abbrevCny(v.toFixed(2), 1);
    }

    const slotW = plotW / slots;
    const barW = Math.max(1, slotW * 0.72);
    const labelEvery = [1, 2, 5, 10, 15, 30, 60].find((n) => slots / n <= 8) || 60;
    for (let i = 0; i < slots; i++) {
      const key = first + i * 60000;
      const x = padL + i * slotW + (slotW - barW) / 2;
      const v = minutes.get(key);
      if (v) {
        const total = Math.max(v.gmv, v.mobile);
        const isLive = key === liveMinute;
        const rx = Math.min(barW / 4, fs * 0.25);
        svg("rect", { x, y: y(total), width: barW, height: Math.max(0, y(0) - y(total)), rx, class: "bar-total" }, root);
        svg("rect", { x, y: y(v.mobile), width: barW, height: Math.max(0, y(0) - y(v.mobile)), rx, class: isLive ? "bar-live" : "bar-mobile" }, root)
          .appendChild(document.createElementNS(SVG_NS, "title")).textContent =
          `${v.label}  total ${abbrevCny(v.gmv.toFixed(2), 2)} · mobile ${abbrevCny(v.mobile.toFixed(2), 2)}`;
      }
      const onGrid = Math.round(key / 60000) % labelEvery === 0;
      const nearGrid = Math.round(key / 60000) % labelEvery;
      const isNewestLabel = key === newest && !onGrid && nearGrid >= labelEvery * 0.6;
      if (key <= newest && (onGrid || isNewestLabel)) {
        const t = svg("text", { x: padL + i * slotW + slotW / 2, y: H - fs * 0.45, "text-anchor": "middle", class: "axis-label" }, root);
        t.textContent = labelFor(key);
      }
    }
    host.replaceChildren(root);
  }

  // ------------------------------------------------------------------- alerts

  function onAlert(a) {
    if (!a || !a.merchant_id) return;
    const key = `${a.merchant_id}|${parseMoney(a.threshold_cny).int}`;
    if (seenAlerts.has(key)) return;
    seenAlerts.add(key);
    if (seenAlerts.size > 5000) seenAlerts.delete(seenAlerts.values().next().value);

    const ol = $("alerts");
    const note = ol.querySelector(".empty-note");
    if (note) note.remove();
    const li = document.createElement("li");
    li.className = "alert fresh";
    li.dataset.merchant = a.merchant_id;
    li.dataset.threshold = String(a.threshold_cny);
    li.title = `${a.merchant_id} passed ${fmtMoneyExact(a.threshold_cny, "¥")} (GMV ${fmtMoneyExact(a.gmv_cny, "¥")})`;
    for (const [cls, txt] of [["alert-th", abbrevCny(a.threshold_cny)], ["alert-id", String(a.merchant_id)], ["alert-time", hms(a.settled_at)]]) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = txt;
      li.appendChild(span);
    }
    li.addEventListener("animationend", () => li.classList.remove("fresh"), { once: true });
    ol.prepend(li);
    while (ol.children.length > MAX_ALERTS_SHOWN) ol.lastElementChild.remove();
  }

  // --------------------------------------------------------------- connection

  let es = null;
  let retryMs = 1000;
  let retryTimer = 0;
  let lastEventId = "";  // where to resume when we reopen the stream ourselves

  function connect() {
    clearTimeout(retryTimer);
    if (es) es.close();
    esReconnecting = false;
    // The browser's own reconnects send Last-Event-ID; a new EventSource
    // cannot, so it names the resume point in the query instead.
    es = new EventSource(lastEventId ? "/api/live?last_event_id=" + encodeURIComponent(lastEventId) : "/api/live");
    const parse = (e) => {
      if (e.lastEventId) lastEventId = e.lastEventId;
      try { return JSON.parse(e.data); } catch (_) { return null; }
    };
    es.addEventListener("snapshot", (e) => onSnapshot(parse(e)));
    es.addEventListener("alert", (e) => onAlert(parse(e)));
    es.onmessage = (e) => { // untyped events: route by shape
      const d = parse(e);
      if (d && d.threshold_cny != null) onAlert(d);
      else if (d && d.gmv_cny != null) onSnapshot(d);
    };
    es.onopen = () => { esReconnecting = false; retryMs = 1000; updateConnection(); };
    es.onerror = () => {
      esReconnecting = true;
      updateConnection();
      if (es.readyState === EventSource.CLOSED) { // the browser gave up: retry ourselves
        retryTimer = setTimeout(connect, retryMs);
        retryMs = Math.min(15000, retryMs * 2);
      }
    };
  }

  function poll() {
    fetch("/api/snapshot", { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))))
      .then((snap) => { esReconnecting = false; onSnapshot(snap); })
      .catch(() => { esReconnecting = true; updateConnection(); })
      .finally(() => setTimeout(poll, esReconnecting ? 2000 : publishMs));
  }

  function updateConnection() {
    const el = $("connection");
    const txt = el.querySelector(".connection-text");
    let state, label, severe = false;
    if (!lastRecvAt) {
      state = "connecting";
      label = "CONNECTING";
    } else {
      const age = performance.now() - lastRecvAt;
      if (esReconnecting || age > 3 * publishMs) {
        state = "stale";
        label = `STALE · ${Math.floor(age / 1000)}s`;
        severe = age >= 10000 || (es && es.readyState === EventSource.CLOSED);
        // stream looks open but silent for long: force a fresh connection
        if (!esReconnecting && age > Math.max(15000, 20 * publishMs) && es && es.readyState === EventSource.OPEN) connect();
      } else {
        state = "live";
        label = "LIVE";
      }
    }
    if (el.dataset.state !== state) el.dataset.state = state;
    if (document.body.dataset.conn !== state) document.body.dataset.conn = state;
    el.classList.toggle("severe", severe);
    setText(txt, label);
  }

  // --------------------------------------------------------------------- boot

  function boot() {
    renderChart();
    $("alerts").innerHTML = '<li class="empty-note">Waiting for the first milestone…</li>';
    fitAll();
    // `?poll` polls /api/snapshot instead of streaming (for proxies that break
    // SSE, and for headless screenshots that wait for the network to go idle).
    if (new URLSearchParams(location.search).has("poll")) {
      poll();
    } else {
      fetch("/api/snapshot", { cache: "no-store" })
        .then((r) => (r.ok ? r.json() : null))
        .then((snap) => { if (snap) onSnapshot(snap); })
        .catch(() => {});
      connect();
    }
    setInterval(updateConnection, 250);
    let resizeQueued = false;
    window.addEventListener("resize", () => {
      if (resizeQueued) return;
      resizeQueued = true;
      requestAnimationFrame(() => { resizeQueued = false; fitAll(); renderChart(); });
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && tweens.size && !rafId) rafId = requestAnimationFrame(step);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();

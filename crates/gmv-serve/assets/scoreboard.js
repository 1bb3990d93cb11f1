// gmv-stream gala scoreboard. Plain ES2020, no dependencies.
// Data: GET /api/screen (milestones, last year) and /api/day (the day's
// minutes) once, GET /api/snapshot once, then EventSource('/api/live') with
// `snapshot` and `alert` events (the JSON contract is ../shared/EVENTS.md;
// event ids and resuming are described in gmv-serve's src/feed.rs). The
// operator view (/ops or /?ops) also polls /api/ops.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const MINUTE = 60000;
  const MAX_MINUTES_KEPT = 31 * 1440; // the longest window the engine takes
  const MAX_ALERTS_KEPT = 24;
  const MOMENT_MS = { milestone: 6000, baseline: 12000 };
  const params = new URLSearchParams(location.search);
  const OPS = location.pathname.replace(/\/+$/, "") === "/ops" || params.has("ops");

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

  // Exact money in fen as a BigInt (milestones and growth are decided on
  // these, never on floats).
  function fenOf(s) {
    const m = parseMoney(s);
    const fen = BigInt(m.int) * 100n + BigInt((m.frac + "00").slice(0, 2));
    return m.neg ? -fen : fen;
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
  const abbrevFen = (fen, dp = 2) => abbrevCny((fen / 100n).toString() + "." + String(fen % 100n).padStart(2, "0"), dp);

  const pct = (x, dp = 1) => (x == null || !Number.isFinite(Number(x)) ? "–" : (Number(x) * 100).toFixed(dp) + "%");

  // RFC 3339 -> wall-clock parts as written (the festival's own offset).
  function clockOf(ts) {
    const m = /T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(ts || "");
    return m ? { hh: m[1], mm: m[2], ss: m[3] || "00" } : null;
  }
  const hms = (ts) => { const c = clockOf(ts); return c ? `${c.hh}:${c.mm}:${c.ss}` : "--:--:--"; };
  function longDate(ts) {
    const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(ts || "");
    return m ? `${Number(m[3])} ${MONTHS[Number(m[2]) - 1]} ${m[1]}` : "";
  }
  const fmtMs = (v) => (v == null || !Number.isFinite(Number(v)) ? "–" : (Number(v) < 10 ? Number(v).toFixed(1) : fmtInt(v)) + " ms");
  function fmtBytes(v) {
    let n = Number(v);
    if (!Number.isFinite(n)) return "–";
    for (const u of ["B", "KiB", "MiB", "GiB"]) {
      if (n < 1024 || u === "GiB") return (u === "B" ? String(n) : n.toFixed(1)) + " " + u;
      n /= 1024;
    }
    return "–";
  }

  function setText(el, txt) {
    if (!el || el.textContent === txt) return;
    const grew = el.textContent.length !== txt.length;
    el.textContent = txt;
    if (grew && el.classList.contains("fit")) fit(el);
  }

  // ------------------------------------------------------------------ tweening

  const tweens = new Map(); // element id -> tween
  let rafId = 0;

  // Animate a monotonic counter towards `target`; print `finalText` at the end.
  // Linear over (almost) one publish interval: the counter climbs at a steady
  // pace, like a meter, instead of jumping and stopping each tick.
  function tweenTo(id, target, finalText, fmt, duration) {
    const el = $(id);
    if (!el) return;
    const cur = tweens.has(id) ? tweens.get(id).value : Number(el.dataset.value || 0);
    if (!Number.isFinite(target) || target <= cur || duration <= 0 || document.hidden) {
      // Equal, never-seen-lower (server restart) or not animatable: settle now.
      tweens.delete(id);
      el.dataset.value = String(target);
      setText(el, finalText);
      return;
    }
    tweens.set(id, { el, from: cur, to: target, value: cur, start: performance.now(), duration, fmt, finalText });
    if (!rafId) rafId = requestAnimationFrame(step);
    // rAF can be throttled or absent (hidden tab, headless): settle on time anyway.
    setTimeout(settleExpired, duration + 40);
  }

  function settle(id, tw) {
    tweens.delete(id);
    tw.el.dataset.value = String(tw.to);
    setText(tw.el, tw.finalText);
  }

  function settleExpired() {
    const now = performance.now();
    for (const [id, tw] of tweens) if (now - tw.start >= tw.duration) settle(id, tw);
  }

  function step(now) {
    rafId = 0;
    for (const [id, tw] of tweens) {
      const t = Math.min(1, (now - tw.start) / tw.duration);
      if (t >= 1) {
        settle(id, tw);
      } else {
        tw.value = Math.max(tw.value, tw.from + (tw.to - tw.from) * Math.max(0, t));
        setText(tw.el, tw.fmt(tw.value));
      }
    }
    if (tweens.size) rafId = requestAnimationFrame(step);
  }

  // Shrink a `.fit` element's font (CSS var --fs, in multiples of the
  // minimum text size --f) so its text stays on one line inside its box,
  // whatever the figure's length; never below --fs-min (1: the minimum).
  function fit(el) {
    if (!el || !el.classList.contains("fit")) return;
    el.style.removeProperty("--fs");
    const style = getComputedStyle(el);
    const base = parseFloat(style.getPropertyValue("--fs"));
    const floor = parseFloat(style.getPropertyValue("--fs-min")) || 1;
    const avail = el.clientWidth;
    const need = el.scrollWidth;
    if (base > 0 && avail > 0 && need > avail * 0.98) {
      el.style.setProperty("--fs", Math.max(floor, (base * (avail * 0.96)) / need).toFixed(3));
    }
  }
  const fitAll = () => document.querySelectorAll(".fit").forEach(fit);

  // --------------------------------------------------------------------- state

  let last = null;            // last applied snapshot
  let lastRecvAt = 0;         // performance.now() of the last snapshot received
  let publishMs = 500;
  let esReconnecting = false;
  let screen = { milestone_every_cny: "10000000000.00", baseline: null };
  let milestoneFen = fenOf(screen.milestone_every_cny);
  let baselineFen = null;     // last year's total, when configured
  let passedK = null;         // milestones passed at the last snapshot
  let wasBelowBaseline = null;
  const minutes = new Map();  // minute start, epoch ms -> {minute, gmv, mobile}
  let dayWindow = null;       // {start, end} as RFC 3339
  let dayWatermark = null;
  let dayFetch = null;        // the /api/day request in flight
  const alerts = [];          // kept crossings, newest event time first
  const alertKeys = new Set();
  let ladderCounts = new Map();
  const moments = [];         // every moment shown (for operators and tests)
  window.__moments = moments;

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
    const gap = lastRecvAt ? performance.now() - lastRecvAt : 0;
    lastRecvAt = performance.now();
    if (!acceptable(s)) return;
    if (Number(s.publish_interval_ms) > 0) publishMs = Number(s.publish_interval_ms);
    const restarted = last && Number(s.seq) < Number(last.seq);
    if (restarted) {
      minutes.clear();
      alerts.length = 0;
      alertKeys.clear();
      $("alerts").textContent = "";
      passedK = null;
      wasBelowBaseline = null;
    }
    last = s;
    window.__lastSnapshot = s;
    document.body.dataset.seq = String(s.seq);
    if (s.window && !dayWindow) dayWindow = s.window;
    if (s.watermark) dayWatermark = s.watermark;
    const recent = s.recent_minutes || [];
    // Away long enough that minutes may be missing between what we hold and
    // what the snapshot carries: ask for the whole day again.
    if (restarted || gap > 30000 || (minutes.size && recent.length >= 30 && missingBefore(recent[0]))) loadDay();
    mergeMinutes(recent);
    render(s);
    celebrate(s);
    updateConnection();
  }

  function missingBefore(first) {
    const t = Date.parse(first && first.minute);
    if (!Number.isFinite(t)) return false;
    let newest = -Infinity;
    for (const k of minutes.keys()) if (k > newest) newest = k;
    return newest < t - MINUTE;
  }

  // -------------------------------------------------------------- the day

  // A minute's figures only grow while the engine runs, so merging keeps the
  // larger: /api/day and the snapshots may arrive in either order.
  function mergeMinutes(list) {
    for (const r of list) {
      const t = Date.parse(r.minute);
      if (!Number.isFinite(t)) continue;
      const key = Math.floor(t / MINUTE) * MINUTE;
      const gmv = Number(r.gmv_cny) || 0, mobile = Number(r.mobile_gmv_cny) || 0;
      const had = minutes.get(key);
      if (!had || gmv >= had.gmv) minutes.set(key, { minute: r.minute, gmv, mobile });
    }
    if (minutes.size > MAX_MINUTES_KEPT) {
      const keys = [...minutes.keys()].sort((a, b) => a - b);
      for (const k of keys.slice(0, minutes.size - MAX_MINUTES_KEPT)) minutes.delete(k);
    }
  }

  function loadDay() {
    if (dayFetch) return;
    dayFetch = fetch("/api/day", { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))))
      .then((day) => {
        if (!day) return;
        if (day.window) dayWindow = day.window;
        if (day.watermark && (!dayWatermark || Date.parse(day.watermark) > Date.parse(dayWatermark))) dayWatermark = day.watermark;
        mergeMinutes(day.minutes || []);
        document.body.dataset.day = "loaded";
        renderCurve();
      })
      // 503 before the first snapshot: retry. (A server without /api/day
      // answers 404: the curve then starts from the snapshots' minutes.)
      .catch((e) => { if (e.message !== "404") setTimeout(loadDay, 1500); })
      .finally(() => { dayFetch = null; });
  }

  // ------------------------------------------------------------ screen keys

  function loadScreen() {
    fetch("/api/screen", { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))))
      .then((cfg) => {
        screen = cfg || screen;
        try { milestoneFen = fenOf(screen.milestone_every_cny); } catch (_) { milestoneFen = 0n; }
        const b = screen.baseline;
        baselineFen = b && b.gmv_cny ? fenOf(b.gmv_cny) : null;
        if (baselineFen !== null && baselineFen <= 0n) baselineFen = null;
        passedK = null;
        wasBelowBaseline = null;
        document.body.dataset.screen = "loaded";
        if (last) { render(last); celebrate(last); }
      })
      .catch((e) => {
        if (e.message === "404") document.body.dataset.screen = "loaded"; // an older server: defaults
        else setTimeout(loadScreen, 2000);
      });
  }

  // ---------------------------------------------------------------- moments

  // Total-GMV milestones and last year's total: celebrated when a snapshot
  // takes the total past one, never for what was passed before the page
  // opened (a reload mid-evening does not replay the evening).
  function celebrate(s) {
    if (document.body.dataset.screen !== "loaded") return;
    const total = fenOf(s.gmv_cny);
    const at = s.watermark ? hms(s.watermark) : "";
    const k = milestoneFen > 0n ? total / milestoneFen : 0n;
    const below = baselineFen !== null ? total < baselineFen : null;
    if (wasBelowBaseline === true && below === false) {
      showMoment("baseline", `Past ${screen.baseline.label}!`, `${abbrevFen(baselineFen, 1)} at ${at}`, baselineFen);
    } else if (passedK !== null && k > passedK) {
      const line = k * milestoneFen;
      showMoment("milestone", "Milestone", `${abbrevFen(line, 1)} at ${at}`, line);
    }
    passedK = k;
    wasBelowBaseline = below;
  }

  let momentTimer = 0;
  let momentUntil = 0;
  let momentKind = "";
  function showMoment(kind, kicker, text, line) {
    const now = performance.now();
    // last year's moment is not cut short by a milestone
    if (momentKind === "baseline" && kind !== "baseline" && now < momentUntil) return;
    const el = $("moment");
    el.querySelector(".moment-kicker").textContent = kicker;
    el.querySelector(".moment-text").textContent = text;
    el.dataset.kind = kind;
    el.dataset.line = (line / 100n).toString() + "." + String(line % 100n).padStart(2, "0");
    el.hidden = false;
    el.parentElement.classList.add("has-moment");
    el.classList.remove("show");
    void el.offsetWidth; // restart the animation
    el.classList.add("show");
    const hero = $("gmv-cny");
    hero.classList.remove("flash");
    void hero.offsetWidth;
    hero.classList.add("flash");
    momentKind = kind;
    momentUntil = now + MOMENT_MS[kind];
    moments.push({ kind, line: el.dataset.line, text: kicker + " " + text, seq: last ? last.seq : null });
    if (moments.length > 100) moments.shift();
    clearTimeout(momentTimer);
    momentTimer = setTimeout(() => {
      el.hidden = true;
      el.parentElement.classList.remove("has-moment");
      el.classList.remove("show");
      momentKind = "";
    }, MOMENT_MS[kind]);
  }

  // -------------------------------------------------------------------- render

  function render(s) {
    const d = animMs();
    tweenTo("gmv-cny", Number(s.gmv_cny ?? 0), fmtMoneyExact(s.gmv_cny, "¥"), (v) => fmtMoneyNumber(v, "¥"), d);
    tweenTo("gmv-usd", Number(s.gmv_usd ?? 0), fmtMoneyExact(s.gmv_usd, "US$"), (v) => fmtMoneyNumber(v, "US$"), d);
    renderGrowth(s, d);

    setText($("current-tps"), fmtInt(s.current_tps));
    setText($("peak-tps"), fmtInt(s.peak_tps));
    setText($("peak-second"), s.peak_second ? hms(s.peak_second) : "--:--:--");
    setText($("mobile-share"), pct(s.mobile_share));
    const share = Math.max(0, Math.min(1, Number(s.mobile_share) || 0));
    $("mobile-share-bar").style.width = (share * 100).toFixed(2) + "%";
    const b = screen.baseline;
    const mark = $("mobile-share-mark");
    if (b && b.mobile_share != null) {
      const bs = Number(b.mobile_share);
      setText($("mobile-sub"), `${b.label}: ${pct(bs, Number.isInteger(bs * 100) ? 0 : 1)}`);
      mark.hidden = false;
      mark.style.left = (Math.max(0, Math.min(1, bs)) * 100).toFixed(2) + "%";
    } else {
      setText($("mobile-sub"), "of GMV");
      mark.hidden = true;
    }

    setText($("festival-date"), longDate((s.window && s.window.start) || s.watermark));
    setText($("watermark"), s.watermark ? hms(s.watermark) : "--:--:--");

    renderOpsFromSnapshot(s);
    renderLadder(s.thresholds || []);
    renderTop(s.top_merchants || []);
    renderCurve();
  }

  // Growth on last year when it is configured (before passing it: how much
  // of it is done), else the transaction count.
  function renderGrowth(s, d) {
    const tile = $("growth-tile");
    const b = screen.baseline;
    if (baselineFen === null) {
      tile.dataset.kind = "transactions";
      setText($("growth-label"), "Transactions");
      setText($("growth-sub"), `${fmtInt(s.merchants)} merchants`);
      tweenTo("growth", Number(s.transactions ?? 0), fmtInt(s.transactions), (v) => fmtInt(Math.floor(v)), d);
      return;
    }
    tweens.delete("growth");
    const total = fenOf(s.gmv_cny);
    // per mille of last year, rounded half up: 1394 -> +39.4%
    const permille = (total * 2000n / baselineFen + 1n) / 2n;
    const passed = total >= baselineFen;
    tile.dataset.kind = passed ? "growth" : "progress";
    const tenths = passed ? permille - 1000n : permille;
    const txt = `${passed ? "+" : ""}${tenths / 10n}.${tenths % 10n}%`;
    setText($("growth-label"), passed ? `vs ${b.label}` : `Of ${b.label}`);
    setText($("growth"), txt);
    setText($("growth-sub"), `${b.label}: ${abbrevFen(baselineFen, 1)}`);
    tile.title = passed ? `${txt} on ${b.label}'s total` : `${txt} of ${b.label}'s total so far`;
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
          '<span class="rung-count"></span>';
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
      setText(li.querySelector(".rung-count"), fmtInt(r.merchants));
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
        ["top-gmv", abbrevCny(m.gmv_cny, 2, true)], ["top-share", pct(m.mobile_share, 0)]]) {
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

  // ---------------------------------------------------------- the day's curve

  // 1, 2 or 5 times a power of ten, at least `raw`.
  function niceStep(raw) {
    if (!(raw > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw * (1 - 1e-9)) return m * p;
    return 10 * p;
  }

  // Minutes between time labels.
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440];
  // Spans the x axis may take, minutes: it grows with the day.
  const SPANS = [10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 360, 480, 720, 960, 1440];

  function svg(tag, attrs, parent) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const k in attrs) el.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(el);
    return el;
  }

  // The clock `offsetMin` after the window's start; the day's end is 24:00.
  function clockLabel(startTs, offsetMin) {
    const c = clockOf(startTs);
    const base = c ? Number(c.hh) * 60 + Number(c.mm) : 0;
    let t = (((base + offsetMin) % 1440) + 1440) % 1440;
    if (t === 0 && offsetMin > 0) t = 1440;
    return String(Math.floor(t / 60)).padStart(2, "0") + ":" + String(t % 60).padStart(2, "0");
  }

  // The day's cumulative GMV (and mobile under it) from the window's start.
  // The watermark's minute is still filling: it ends the curve at the
  // watermark, dashed, instead of being drawn as a whole (smaller) minute.
  function curvePoints() {
    const keys = [...minutes.keys()].sort((a, b) => a - b);
    const start = dayWindow ? Date.parse(dayWindow.start) : (keys.length ? keys[0] : 0);
    const wm = dayWatermark ? Date.parse(dayWatermark) : NaN;
    const liveKey = Number.isFinite(wm) ? Math.floor(wm / MINUTE) * MINUTE : NaN;
    const pts = [{ t: start, v: 0, m: 0 }];
    let cum = 0, cumM = 0, prevEnd = start, live = false;
    for (const key of keys) {
      if (key < start) continue;
      if (key > prevEnd) pts.push({ t: key, v: cum, m: cumM });
      const r = minutes.get(key);
      cum += r.gmv;
      cumM += r.mobile;
      let end = key + MINUTE;
      if (key === liveKey) { end = Math.max(key + 1000, Math.min(wm, end)); live = true; }
      pts.push({ t: end, v: cum, m: cumM });
      prevEnd = end;
    }
    return { keys, start, pts, live, total: cum };
  }

  function renderCurve() {
    const host = $("day-chart");
    if (!host || OPS) return;
    const W = Math.max(100, Math.round(host.clientWidth));
    const H = Math.max(60, Math.round(host.clientHeight));
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "Cumulative GMV through the day" });
    const defs = svg("defs", {}, root);
    for (const [id, a, b, oa, ob] of [["area-total", "#ffc94d", "#ff5a1f", 0.38, 0.04], ["area-mobile", "#ff5a1f", "#ff5a1f", 0.5, 0.08]]) {
      const g = svg("linearGradient", { id, x1: 0, y1: 0, x2: 0, y2: 1 }, defs);
      svg("stop", { offset: "0", "stop-color": a, "stop-opacity": oa }, g);
      svg("stop", { offset: "1", "stop-color": b, "stop-opacity": ob }, g);
    }
    const { keys, start, pts, live, total } = curvePoints();
    const fs = parseFloat(getComputedStyle(host).fontSize) || 16;
    host.dataset.points = String(keys.length);
    host.dataset.first = keys.length ? minutes.get(keys[0]).minute : "";
    host.dataset.live = live ? "1" : "0";

    if (!keys.length) {
      const t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, root);
      t.textContent = "Waiting for the first sales…";
      host.replaceChildren(root);
      return;
    }

    // y: 0 up to a 1/2/5 x 10^k step above the total (and last year's
    // total once it is within reach, so the line it must pass is on screen).
    let yMax = total;
    const base = baselineFen !== null ? Number(baselineFen) / 100 : null;
    if (base !== null && total >= base * 0.5) yMax = Math.max(yMax, base);
    const labelW = fs * 4.2;
    const padL = labelW + fs * 0.5, padR = fs * 1.6, padT = fs * 0.8, padB = fs * 1.7;
    const plotW = Math.max(10, W - padL - padR), plotH = Math.max(10, H - padT - padB);
    const rows = Math.max(1, Math.min(4, Math.floor(plotH / (fs * 1.9))));
    const stepY = niceStep((yMax * 1.04) / rows);
    const topY = Math.max(stepY, Math.ceil((yMax * 1.04) / stepY) * stepY);

    // x: the window's start to a span that grows with the day.
    const windowEnd = dayWindow ? Date.parse(dayWindow.end) : start + 1440 * MINUTE;
    const elapsedMin = (pts[pts.length - 1].t - start) / MINUTE;
    const maxSpan = Math.max(1, Math.round((windowEnd - start) / MINUTE));
    const span = Math.min(maxSpan, SPANS.find((m) => m >= elapsedMin * 1.06) || maxSpan);

    const x = (t) => padL + ((t - start) / (span * MINUTE)) * plotW;
    const y = (v) => padT + plotH - (v / topY) * plotH;

    for (let v = 0; v <= topY * (1 + 1e-9); v += stepY) {
      const yy = Math.round(y(v)) + 0.5;
      svg("line", { x1: padL, x2: W - padR, y1: yy, y2: yy, class: v === 0 ? "grid base" : "grid" }, root);
      const t = svg("text", { x: padL - fs * 0.45, y: yy + fs * 0.35, "text-anchor": "end", class: "axis-label" }, root);
      t.textContent = v === 0 ? "0" : abbrevCny(v.toFixed(2), 1);
    }
    const most = Math.max(2, Math.floor(plotW / (fs * 4.2)));
    const stepT = TIME_STEPS.find((m) => span / m <= most) || 1440;
    for (let m = 0; m <= span; m += stepT) {
      const t = svg("text", { x: x(start + m * MINUTE), y: H - fs * 0.35, "text-anchor": "middle", class: "axis-label" }, root);
      t.textContent = clockLabel(dayWindow ? dayWindow.start : "", m);
    }

    const line = (key) => pts.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join("");
    const area = (key) => `${line(key)}L${x(pts[pts.length - 1].t).toFixed(1)},${y(0).toFixed(1)}L${x(start).toFixed(1)},${y(0).toFixed(1)}Z`;
    svg("path", { d: area("v"), class: "area-total" }, root);
    svg("path", { d: area("m"), class: "area-mobile" }, root);
    const settled = live ? pts.slice(0, -1) : pts;
    svg("path", { d: settled.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(""), class: "line-total" }, root);
    const head = pts[pts.length - 1];
    if (live && settled.length) {
      const prev = settled[settled.length - 1];
      svg("path", { d: `M${x(prev.t).toFixed(1)},${y(prev.v).toFixed(1)}L${x(head.t).toFixed(1)},${y(head.v).toFixed(1)}`, class: "line-live" }, root);
    }

    // Last year's total, and where this year passed it.
    if (base !== null && base <= topY) {
      const yy = Math.round(y(base)) + 0.5;
      svg("line", { x1: padL, x2: W - padR, y1: yy, y2: yy, class: "baseline" }, root);
      const passedAt = pts.findIndex((p) => p.v >= base);
      // on the left, above the line: the curve is low there
      const label = svg("text", { x: padL + fs * 0.4, y: yy - fs * 0.4, "text-anchor": "start", class: "baseline-label" }, root);
      label.textContent = `${screen.baseline.label}: ${abbrevFen(baselineFen, 1)}`;
      if (passedAt > 0) {
        const a = pts[passedAt - 1], b = pts[passedAt];
        const t = a.t + (b.t - a.t) * ((base - a.v) / Math.max(1e-9, b.v - a.v));
        svg("circle", { cx: x(t), cy: yy, r: fs * 0.45, class: "baseline-pass" }, root);
      }
    }
    svg("circle", { cx: x(head.t), cy: y(head.v), r: fs * 0.7, class: live ? "head-halo live" : "head-halo" }, root);
    svg("circle", { cx: x(head.t), cy: y(head.v), r: fs * 0.32, class: "head" }, root);
    host.replaceChildren(root);
  }

  // ------------------------------------------------------------------- alerts

  // Crossings are listed by event time (`settled_at`), newest first, however
  // they arrive: a replay or a slow partition can deliver an older one late.
  function onAlert(a) {
    if (!a || !a.merchant_id) return;
    const key = `${a.merchant_id}|${parseMoney(a.threshold_cny).int}`;
    if (alertKeys.has(key)) return;
    alertKeys.add(key);
    if (alertKeys.size > 5000) alertKeys.delete(alertKeys.values().next().value);
    const at = Date.parse(a.settled_at);
    const entry = { a, key, at: Number.isFinite(at) ? at : -Infinity, th: fenOf(a.threshold_cny) };
    alerts.push(entry);
    alerts.sort((p, q) => (q.at - p.at) || (p.a.merchant_id < q.a.merchant_id ? -1 : p.a.merchant_id > q.a.merchant_id ? 1 : 0) ||
      (p.th < q.th ? -1 : p.th > q.th ? 1 : 0));
    if (alerts.length > MAX_ALERTS_KEPT) alerts.length = MAX_ALERTS_KEPT;
    const index = alerts.indexOf(entry);
    if (index < 0) return; // older than everything kept

    const ol = $("alerts");
    const note = ol.querySelector(".empty-note");
    if (note) note.remove();
    const li = document.createElement("li");
    li.className = "alert fresh";
    li.dataset.key = key;
    li.dataset.merchant = a.merchant_id;
    li.dataset.threshold = String(a.threshold_cny);
    li.dataset.settledAt = String(a.settled_at);
    li.title = `${a.merchant_id} passed ${fmtMoneyExact(a.threshold_cny, "¥")} at ${a.settled_at} (GMV ${fmtMoneyExact(a.gmv_cny, "¥")})`;
    for (const [cls, txt] of [["alert-th", abbrevCny(a.threshold_cny)], ["alert-id", String(a.merchant_id)], ["alert-time", hms(a.settled_at)]]) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = txt;
      li.appendChild(span);
    }
    li.addEventListener("animationend", () => li.classList.remove("fresh"), { once: true });
    // existing rows keep their order; the new one goes in its place
    const after = alerts[index + 1];
    const before = after ? ol.querySelector(`li[data-key="${CSS.escape(after.key)}"]`) : null;
    ol.insertBefore(li, before);
    const kept = new Set(alerts.map((e) => e.key));
    for (const row of [...ol.children]) if (!kept.has(row.dataset.key)) row.remove();
  }

  // --------------------------------------------------------------- operators

  function renderOpsFromSnapshot(s) {
    if (!OPS) return;
    const lat = s.latency_ms || {};
    // No samples yet (or a source that does not measure): say so, not "0 ms".
    const measured = Number(lat.count) > 0;
    setText($("lat-p50"), measured ? fmtMs(lat.p50) : "–");
    setText($("lat-p99"), measured ? fmtMs(lat.p99) : "–");
    setText($("lat-p999"), measured ? fmtMs(lat.p999) : "–");
    const acc = s.accounting || {};
    setText($("consumed"), acc.consumed == null ? "–" : fmtInt(acc.consumed));
    setText($("counted"), acc.counted == null ? "–" : fmtInt(acc.counted));
    setText($("rejected"), acc.rejected == null ? "–" : fmtInt(acc.rejected));
    const reasons = $("rejected-reasons");
    reasons.textContent = "";
    for (const [k, v] of Object.entries(s.rejected || {})) {
      if (!Number(v)) continue;
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k.replace(/_/g, " ");
      dd.textContent = fmtInt(v);
      reasons.append(dt, dd);
    }
    setText($("seq-label"), String(s.seq));
    setText($("publish-interval"), fmtMs(s.publish_interval_ms));
    setText($("ops-watermark"), s.watermark || "–");
    setText($("ops-as-of"), s.as_of || "–");
    setText($("ops-gmv"), fmtMoneyExact(s.gmv_cny, "¥"));
  }

  function pollOps() {
    const started = performance.now();
    fetch("/api/ops", { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))))
      .then((o) => {
        setText($("ops-fetch"), `ok · ${Math.round(performance.now() - started)} ms`);
        const lat = o.latency_ms || {};
        if (Number(lat.count) > 0) {
          setText($("lat-p50"), fmtMs(lat.p50));
          setText($("lat-p99"), fmtMs(lat.p99));
          setText($("lat-p999"), fmtMs(lat.p999));
        }
        setText($("lag-total"), o.partitions ? fmtInt(o.lag_total) : "no Kafka");
        setText($("events-per-second"), fmtInt(o.events_per_second));
        setText($("live-clients"), fmtInt(o.live_clients));
        setText($("ops-clients"), `${fmtInt(o.live_clients)} of ${fmtInt(o.max_clients)}`);
        setText($("clients-refused"), fmtInt(o.clients_refused));
        setText($("alerts-skipped"), fmtInt(o.alerts_skipped));
        setText($("snapshots-published"), fmtInt(o.snapshots_published));
        setText($("alerts-published"), fmtInt(o.alerts_published));
        setText($("ready"), o.ready ? "ready" : `not ready: ${o.not_ready || "?"}`);
        $("ready").dataset.ok = o.ready ? "1" : "0";
        setText($("partitions"), fmtInt(o.partitions));
        setText($("dedup-ids"), fmtInt(o.dedup_ids));
        setText($("dedup-bytes"), fmtBytes(o.dedup_bytes));
        const list = $("lag-list");
        list.textContent = "";
        for (const l of (o.lag || []).slice().sort((p, q) => q.lag - p.lag).slice(0, 8)) {
          const dt = document.createElement("dt"), dd = document.createElement("dd");
          dt.textContent = `${l.topic}[${l.partition}]`;
          dd.textContent = fmtInt(l.lag);
          list.append(dt, dd);
        }
      })
      .catch((e) => setText($("ops-fetch"), `failed (${e.message})`))
      .finally(() => setTimeout(pollOps, 1000));
  }

  // --------------------------------------------------------------- connection

  let es = null;
  let retryMs = 1000;
  let retryTimer = 0;
  let reconnects = 0;
  let lastEventId = "";  // where to resume when we reopen the stream ourselves
  const polling = params.has("poll");

  function connect() {
    clearTimeout(retryTimer);
    if (es) { es.close(); reconnects++; }
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
      if (es.readyState === EventSource.CONNECTING) reconnects++;
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
    const age = lastRecvAt ? performance.now() - lastRecvAt : 0;
    if (!lastRecvAt) {
      state = "connecting";
      label = "CONNECTING";
    } else if (esReconnecting || age > 3 * publishMs) {
      state = "stale";
      label = `STALE · ${Math.floor(age / 1000)}s`;
      severe = age >= 10000 || (es && es.readyState === EventSource.CLOSED);
      // stream looks open but silent for long: force a fresh connection
      if (!esReconnecting && age > Math.max(15000, 20 * publishMs) && es && es.readyState === EventSource.OPEN) connect();
    } else {
      state = "live";
      label = "LIVE";
    }
    if (el.dataset.state !== state) el.dataset.state = state;
    if (document.body.dataset.conn !== state) document.body.dataset.conn = state;
    el.classList.toggle("severe", severe);
    setText(txt, label);
    if (OPS) {
      const sse = polling ? "polling /api/snapshot"
        : !es ? "not started"
          : ["connecting", "open", "closed"][es.readyState] + (esReconnecting ? " (reconnecting)" : "");
      setText($("sse-state"), sse);
      setText($("sse-last-id"), lastEventId || "–");
      setText($("sse-reconnects"), String(reconnects));
      setText($("snap-age"), lastRecvAt ? `${(age / 1000).toFixed(1)} s ago` : "–");
    }
  }

  // --------------------------------------------------------------------- boot

  function boot() {
    document.body.dataset.view = OPS ? "ops" : "audience";
    $("ops").hidden = !OPS;
    $("alerts").innerHTML = '<li class="empty-note">Waiting for the first crossing…</li>';
    renderCurve();
    fitAll();
    loadScreen();
    loadDay();
    // `?poll` polls /api/snapshot instead of streaming (for proxies that break
    // SSE, and for headless screenshots that wait for the network to go idle).
    if (polling) {
      poll();
    } else {
      fetch("/api/snapshot", { cache: "no-store" })
        .then((r) => (r.ok ? r.json() : null))
        .then((snap) => { if (snap) onSnapshot(snap); })
        .catch(() => {});
      connect();
    }
    if (OPS) pollOps();
    setInterval(updateConnection, 250);
    let resizeQueued = false;
    window.addEventListener("resize", () => {
      if (resizeQueued) return;
      resizeQueued = true;
      requestAnimationFrame(() => { resizeQueued = false; fitAll(); renderCurve(); });
    });
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && tweens.size && !rafId) rafId = requestAnimationFrame(step);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();

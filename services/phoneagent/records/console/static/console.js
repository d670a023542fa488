// The operator console's bit of JS: refresh the live parts, draw the latency waterfall with
// Chart.js, and keep the transcript in step with the recording player. window.__console tells
// tests (and the curious) what the page did.
"use strict";
(function () {
  const state = (window.__console = { refreshes: 0, chart: false, playing: null, duration: null, errors: [] });
  const COLORS = ["#98a2b3", "#7a5af8", "#2e90fa", "#12b76a", "#f79009", "#f04438"];

  async function fetchFragment(name) {
    const url = new URL(location.href);
    url.searchParams.set("fragment", name);
    const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!res.ok) throw new Error("HTTP " + res.status);
    return res.text();
  }

  function every(ms, fn) {
    let stopped = false;
    const tick = async () => {
      if (stopped) return;
      try {
        if ((await fn()) === false) { stopped = true; return; }
      } catch (e) {
        state.errors.push(String(e));
      }
      setTimeout(tick, ms);
    };
    setTimeout(tick, ms);
  }

  function calls() {
    const body = document.getElementById("call-rows");
    if (!body) return;
    every(Number(body.dataset.refresh || 2000), async () => {
      body.innerHTML = await fetchFragment("rows");
      state.refreshes += 1;
    });
  }

  function drawWaterfall() {
    const canvas = document.getElementById("waterfall");
    const data = document.getElementById("waterfall-data");
    if (!canvas || !data || !window.Chart) return;
    const wf = JSON.parse(data.textContent);
    const turns = wf.turns;
    const datasets = wf.steps.map((s, i) => ({
      label: s.label,
      backgroundColor: COLORS[i % COLORS.length],
      borderSkipped: false,
      data: turns.map((t) => {
        const step = t.steps.find((x) => x.hop === s.hop);
        return step ? [step.start_ms, step.end_ms] : null;
      }),
    }));
    if (state.chartObject) state.chartObject.destroy();
    state.chartObject = new window.Chart(canvas, {
      type: "bar",
      data: { labels: turns.map((t) => "turn " + t.turn_id), datasets: datasets },
      options: {
        indexAxis: "y",
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        skipNull: true,
        scales: {
          x: { title: { display: true, text: "ms after the caller stopped speaking" }, beginAtZero: true },
          y: { stacked: true },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: (ctx) => ctx.dataset.label + ": " + Math.round(ctx.raw[1] - ctx.raw[0]) + " ms",
            },
          },
        },
      },
    });
    state.chart = true;
    state.chartBars = datasets.reduce((n, d) => n + d.data.filter((v) => v !== null).length, 0);
  }

  function follow() {
    const player = document.getElementById("player");
    if (!player) return;
    const msgs = Array.from(document.querySelectorAll(".msg[data-at]"));
    player.addEventListener("loadedmetadata", () => { state.duration = player.duration; });
    if (player.readyState >= 1) state.duration = player.duration;
    const highlight = () => {
      let current = null;
      for (const m of msgs) if (Number(m.dataset.at) <= player.currentTime + 0.05) current = m;
      for (const m of msgs) m.classList.toggle("playing", m === current);
      state.playing = current ? Number(current.dataset.index) : null;
      state.position = player.currentTime;
    };
    player.addEventListener("timeupdate", highlight);
    player.addEventListener("seeked", highlight);
    for (const m of msgs) {
      m.addEventListener("click", () => {
        player.currentTime = Number(m.dataset.at);
        player.play().catch((e) => state.errors.push(String(e)));
      });
    }
  }

  function call() {
    const box = document.getElementById("call-body");
    if (!box) return;
    drawWaterfall();
    follow();
    const live = () => document.getElementById("call-head")?.dataset.live === "1";
    if (!live()) return;
    const busy = () =>
      box.contains(document.activeElement) && document.activeElement.matches("input, select, button") ||
      Array.from(box.querySelectorAll("input[name=target]")).some((i) => i.value);
    every(Number(box.dataset.refresh || 2000), async () => {
      if (busy()) return true; // the operator is typing a transfer target: refresh later
      box.innerHTML = await fetchFragment("body");
      state.refreshes += 1;
      drawWaterfall();
      follow();
      return live(); // false once the call has ended: the last refresh shows the whole record
    });
  }

  function start() {
    const page = document.body.dataset.page;
    if (page === "calls") calls();
    if (page === "call") call();
    state.ready = true;
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

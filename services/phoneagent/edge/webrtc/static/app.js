// Browser call page: WebRTC audio to the agent, live transcript, state and latency.
"use strict";

const $ = (id) => document.getElementById(id);
const stats = { connection: "idle", state: "idle", maxLevel: 0, audibleMs: 0, callerFinals: [],
  callerPartials: 0, agentTexts: [], latencies: [], ended: "", dtmfSent: 0 };
window.__stats = stats; // read by tests and handy in the console

let pc = null, ws = null, mic = null, channel = null, callId = "", audioCtx = null, meterTimer = 0;
let tokenRequired = false, callerPartial = null;
const agentBubbles = new Map(); // generation -> bubble

function token() { return $("token").value.trim() || sessionStorage.getItem("pa_token") || ""; }

function headers() {
  const h = { "Content-Type": "application/json" };
  if (tokenRequired && token()) h.Authorization = "Bearer " + token();
  return h;
}

async function api(path, body) {
  const resp = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401) throw new Error("The access token was not accepted.");
  if (!resp.ok) throw new Error(data.error || "request failed (" + resp.status + ")");
  return data;
}

function setState(state) {
  stats.state = state;
  $("state").className = "state " + state;
  $("state-text").textContent = state;
}

function showError(text) { $("error").textContent = text || ""; }

function bubble(kind, text) {
  const box = $("transcript");
  const empty = box.querySelector(".empty");
  if (empty) empty.remove();
  const el = document.createElement("div");
  el.className = "bubble " + kind;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = kind.startsWith("caller") ? "You" : "Agent";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  el.append(who, body);
  box.append(el);
  box.scrollTop = box.scrollHeight;
  return el;
}

function note(text) {
  const el = document.createElement("div");
  el.className = "note";
  el.textContent = text;
  $("transcript").append(el);
}

function onCaller(ev) {
  if (!ev.final) {
    stats.callerPartials += 1;
    if (!callerPartial) callerPartial = bubble("caller partial", ev.text);
    else callerPartial.querySelector(".text").textContent = ev.text;
    return;
  }
  if (!ev.text) return;
  stats.callerFinals.push(ev.text);
  const el = callerPartial || bubble("caller", ev.text);
  el.className = "bubble caller";
  el.querySelector(".text").textContent = ev.text;
  callerPartial = null;
  $("transcript").scrollTop = $("transcript").scrollHeight;
}

function onAgent(ev) {
  if (!ev.text) return;
  stats.agentTexts.push(ev.text);
  const existing = agentBubbles.get(ev.generation);
  if (existing) {
    const t = existing.querySelector(".text");
    t.textContent = (t.textContent + " " + ev.text).trim();
  } else {
    agentBubbles.set(ev.generation, bubble("agent", ev.text));
  }
  $("transcript").scrollTop = $("transcript").scrollHeight;
}

function onLatency(ev) {
  stats.latencies.push(ev.ms);
  $("latency").textContent = ev.ms + " ms";
  const avg = stats.latencies.reduce((a, b) => a + b, 0) / stats.latencies.length;
  $("latency-avg").textContent = Math.round(avg) + " ms";
  const last = [...agentBubbles.values()].pop();
  const tag = document.createElement("span");
  tag.className = "lat";
  tag.textContent = "reply after " + ev.ms + " ms";
  (last && last.parentNode ? last : $("transcript")).append(tag);
}

function onEvent(ev) {
  if (ev.type === "caller") onCaller(ev);
  else if (ev.type === "agent") onAgent(ev);
  else if (ev.type === "state") setState(ev.state);
  else if (ev.type === "latency") onLatency(ev);
  else if (ev.type === "notice") note(ev.text);
  else if (ev.type === "ended") { stats.ended = ev.reason; note("Call ended (" + ev.reason.replace(/_/g, " ") + ")"); cleanup(); }
}

function watchAudio(stream) {
  const el = new Audio();
  el.srcObject = stream; // Chrome only feeds WebAudio from a remote stream that is also played
  el.autoplay = true;
  el.play().catch(() => {});
  audioCtx = new AudioContext();
  const analyser = audioCtx.createAnalyser();
  analyser.fftSize = 1024;
  audioCtx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  meterTimer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const rms = Math.sqrt(sum / buf.length);
    stats.maxLevel = Math.max(stats.maxLevel, rms);
    if (rms > 0.01) stats.audibleMs += 50;
    $("level").style.width = Math.min(100, rms * 400) + "%";
  }, 50);
}

function waitForIce(conn, ms) {
  if (conn.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (conn.iceGatheringState === "complete") resolve(); };
    conn.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}

async function call() {
  showError("");
  if (tokenRequired && !token()) { showError("Enter the access token first."); return; }
  if (tokenRequired) sessionStorage.setItem("pa_token", token());
  $("call").disabled = true;
  setState("connecting");
  try {
    mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
    pc = new RTCPeerConnection({ iceServers: [] });
    mic.getTracks().forEach((t) => pc.addTrack(t, mic));
    channel = pc.createDataChannel("control");
    channel.onmessage = (m) => { try { const d = JSON.parse(m.data); if (d.dtmf) note("Agent sent tone " + d.dtmf); } catch (e) { /* ignore */ } };
    pc.ontrack = (e) => watchAudio(e.streams[0] || new MediaStream([e.track]));
    pc.onconnectionstatechange = () => {
      stats.connection = pc ? pc.connectionState : "closed";
      if (pc && pc.connectionState === "connected") setState("listening");
      if (pc && pc.connectionState === "failed") { showError("The media connection failed."); cleanup(); }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc, 3000);
    const answer = await api("/api/offer", { type: "offer", sdp: pc.localDescription.sdp });
    callId = answer.call_id;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/api/events?call_id=${encodeURIComponent(callId)}&key=${encodeURIComponent(answer.events_key)}`);
    ws.onmessage = (m) => onEvent(JSON.parse(m.data));
    $("hangup").disabled = false;
    document.querySelectorAll(".keypad button").forEach((b) => { b.disabled = false; });
  } catch (err) {
    showError(err.message || String(err));
    cleanup();
  }
}

async function hangup() {
  $("hangup").disabled = true;
  const id = callId;
  try { if (id) await api("/api/hangup", { call_id: id }); } catch (err) { showError(err.message); }
  cleanup();
}

function cleanup() {
  clearInterval(meterTimer);
  if (channel) { try { channel.close(); } catch (e) { /* closed */ } }
  if (pc) pc.close();
  if (mic) mic.getTracks().forEach((t) => t.stop());
  if (audioCtx) audioCtx.close();
  if (ws && ws.readyState <= 1) setTimeout(() => ws && ws.close(), 500);
  pc = null; mic = null; channel = null; audioCtx = null; callId = "";
  stats.connection = "closed";
  $("level").style.width = "0";
  $("call").disabled = false;
  $("hangup").disabled = true;
  document.querySelectorAll(".keypad button").forEach((b) => { b.disabled = true; });
  setState("idle");
}

function sendDigit(d) {
  if (channel && channel.readyState === "open") { channel.send(JSON.stringify({ dtmf: d })); stats.dtmfSent += 1; }
}

async function init() {
  for (const d of "123456789*0#") {
    const b = document.createElement("button");
    b.textContent = d;
    b.disabled = true;
    b.onclick = () => sendDigit(d);
    $("keypad").append(b);
  }
  $("call").onclick = call;
  $("hangup").onclick = hangup;
  try {
    const cfg = await (await fetch("/api/config")).json();
    tokenRequired = !!cfg.token_required;
    $("token-box").hidden = !tokenRequired;
    if (tokenRequired) $("token").value = sessionStorage.getItem("pa_token") || "";
  } catch (e) { showError("The agent is not reachable."); }
  stats.ready = true;
}

init();

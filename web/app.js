// The live page: the stream view (time ticking, stdin lines, published messages) or, when the
// server runs --chat, the chat view. Uses only framecast.js and the DOM.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var MAX_ROWS = 500;  // the page keeps a bounded log, like everything else here

  function two(n) { return (n < 10 ? "0" : "") + n; }
  function clockText(d) { return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds()); }

  function showStatus(s) {
    var el = $("status");
    el.dataset.state = s.state;
    var text = s.state === "open" ? "live"
      : s.state === "connecting" ? "connecting…"
      : s.state === "waiting" ? "reconnecting in " + Math.max(1, Math.round(s.delay / 1000)) + " s"
      : "disconnected";
    if (s.state === "waiting" && s.code && s.code !== 1006) text += " (closed " + s.code + (s.reason ? ": " + s.reason : "") + ")";
    $("status-text").textContent = text;
  }

  function preview(data) {
    if (typeof data === "string") return { text: data, binary: false };
    var hex = Array.prototype.slice.call(data.subarray(0, 24)).map(function (b) {
      return (b < 16 ? "0" : "") + b.toString(16);
    }).join(" ");
    return { text: data.length + " bytes: " + hex + (data.length > 24 ? " …" : ""), binary: true };
  }

  // ------------------------------------------------------------------------------------------
  function streamView(cfg) {
    $("stream-view").classList.add("active");
    var count = 0, last = 0;
    var fc = new Framecast();
    fc.on("status", showStatus);
    if (cfg.mode === "publish") {
      $("publish").hidden = false;
      var send = function () {
        var v = $("publish-input").value;
        if (v && fc.send(v)) { $("publish-input").value = ""; addRow(v, "sent"); }
      };
      $("publish-send").onclick = send;
      $("publish-input").onkeydown = function (e) { if (e.key === "Enter") send(); };
    }
    function addRow(data, tag) {
      var p = preview(data);
      var row = document.createElement("div");
      row.className = "row";
      var t = document.createElement("time");
      t.textContent = clockText(new Date()) + (tag ? " " + tag : "");
      var span = document.createElement("span");
      span.textContent = p.text;
      if (p.binary) span.className = "bin";
      row.appendChild(t);
      row.appendChild(span);
      var log = $("log");
      var stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 30;
      log.appendChild(row);
      while (log.childNodes.length > MAX_ROWS) log.removeChild(log.firstChild);
      if (stick) log.scrollTop = log.scrollHeight;
    }
    fc.on("message", function (data) {
      count++;
      last = Date.now();
      $("count").textContent = count;
      var p = preview(data);
      $("latest").textContent = p.text;
      // The tutorial's clock: "The time is <unix seconds>" shown as a ticking clock too.
      var m = typeof data === "string" && /^The time is (\d+(\.\d+)?)/.exec(data);
      if (m) {
        $("clock").hidden = false;
        $("clock").textContent = clockText(new Date(parseFloat(m[1]) * 1000));
      }
      addRow(data);
    });
    setInterval(function () {
      if (last) $("ago").textContent = Math.round((Date.now() - last) / 1000) + " s ago";
    }, 1000);
    window.framecastClient = fc;
  }

  // ------------------------------------------------------------------------------------------
  function colorOf(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return "hsl(" + (h % 360) + ", 75%, 70%)";
  }

  function chatView(cfg) {
    $("join-view").classList.add("active");
    $("status-text").textContent = "choose a name";
    var saved = "";
    try { saved = localStorage.getItem("framecast.name") || ""; } catch (e) { /* private mode */ }
    $("name-input").value = saved;
    if (cfg.max_name) $("name-input").maxLength = cfg.max_name;
    $("join-card").onsubmit = function (e) {
      e.preventDefault();
      var name = $("name-input").value.trim();
      if (!name) return;
      try { localStorage.setItem("framecast.name", name); } catch (err) { /* ignore */ }
      join(name);
    };
  }

  function join(name) {
    $("join-view").classList.remove("active");
    $("chat-view").classList.add("active");
    var chat = Framecast.chat({ name: name });
    var connectedOnce = false;
    chat.on("status", showStatus);
    chat.on("open", function () { system(connectedOnce ? "reconnected" : "joined as " + name); connectedOnce = true; });
    chat.on("close", function (ev) { if (ev.wasOpen) system("connection lost" + (ev.code && ev.code !== 1006 ? " (" + ev.code + (ev.reason ? ": " + ev.reason : "") + ")" : "")); });
    chat.on("chat", function (m) { say(m.name, m.text, false); });
    $("chat-form").onsubmit = function (e) {
      e.preventDefault();
      var text = $("chat-input").value;
      if (!text) return;
      if (chat.send(text)) {
        say(name, text, true);
        $("chat-input").value = "";
      } else {
        system("not connected: message not sent");
      }
    };
    $("chat-input").focus();
    window.framecastClient = chat;
  }

  function append(el) {
    var box = $("messages");
    var stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 40;
    box.appendChild(el);
    while (box.childNodes.length > MAX_ROWS) box.removeChild(box.firstChild);
    if (stick) box.scrollTop = box.scrollHeight;
  }

  function say(name, text, mine) {
    var el = document.createElement("div");
    el.className = "msg" + (mine ? " mine" : "");
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = mine ? "you" : name;
    who.style.color = mine ? "var(--accent)" : colorOf(name);
    var bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.textContent = text;
    var at = document.createElement("span");
    at.className = "at";
    at.textContent = clockText(new Date());
    el.appendChild(who);
    el.appendChild(bubble);
    el.appendChild(at);
    append(el);
  }

  function system(text) {
    var el = document.createElement("div");
    el.className = "system";
    el.textContent = text;
    append(el);
  }

  // ------------------------------------------------------------------------------------------
  fetch("/config.json", { cache: "no-store" })
    .then(function (r) { return r.json(); })
    .catch(function () { return { mode: "stream" }; })
    .then(function (cfg) {
      $("mode").textContent = cfg.mode === "chat" ? "chat room" : cfg.mode === "publish" ? "pub/sub" : "stream";
      document.body.dataset.mode = cfg.mode;
      if (cfg.mode === "chat") chatView(cfg); else streamView(cfg);
    });
})();

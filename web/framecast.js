/*
 * framecast.js: a dependency-free browser client for framecast's WebSocket gateway
 * (`framecast serve --ws HOST:PORT`). One framecast message = one WebSocket message: a text
 * message when the payload is valid UTF-8 (a string here), else binary (a Uint8Array).
 *
 *   const fc = new Framecast();                 // ws(s)://<this page's host>/
 *   fc.on("message", (data) => console.log(data));
 *   fc.on("status", (s) => console.log(s.state)); // connecting | open | waiting | closed
 *   fc.send("hello");                            // false while not connected
 *
 *   // The tutorial's chat room (serve --chat): name first, then (name, text) pairs.
 *   const chat = Framecast.chat({ name: "ada" });
 *   chat.on("chat", (m) => console.log(m.name, m.text));
 *   chat.send("hi all");
 *
 * Options: url, hello (a message sent first on every (re)connect), reconnect (default true),
 * minDelay / maxDelay (ms, default 500 / 15000): the n-th retry waits a random time in
 * [d/2, d] with d = min(maxDelay, minDelay * 2^n) (exponential backoff with jitter, so a
 * restarted server is not hit by every page at once). See docs/websocket.md.
 */
(function (root) {
  "use strict";

  function defaultUrl() {
    if (typeof location === "undefined") throw new Error("framecast.js: give options.url");
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
  }

  function Framecast(options) {
    if (typeof options === "string") options = { url: options };
    this.options = Object.assign(
      { url: null, hello: null, reconnect: true, minDelay: 500, maxDelay: 15000 },
      options || {}
    );
    this.url = this.options.url || defaultUrl();
    this.attempt = 0;
    this.state = "closed";
    this.ws = null;
    this.timer = null;
    this.stopped = false;
    this.handlers = {};
    this.received = 0;
    var self = this;
    // Let callers attach handlers first.
    setTimeout(function () { self.connect(); }, 0);
  }

  Framecast.prototype.on = function (event, fn) {
    (this.handlers[event] = this.handlers[event] || []).push(fn);
    return this;
  };

  Framecast.prototype.off = function (event, fn) {
    var list = this.handlers[event] || [];
    this.handlers[event] = list.filter(function (f) { return f !== fn; });
    return this;
  };

  Framecast.prototype.emit = function (event) {
    var args = Array.prototype.slice.call(arguments, 1);
    (this.handlers[event] || []).slice().forEach(function (fn) {
      try { fn.apply(null, args); } catch (e) { setTimeout(function () { throw e; }, 0); }
    });
  };

  Framecast.prototype.setState = function (state, extra) {
    this.state = state;
    this.emit("status", Object.assign({ state: state, attempt: this.attempt }, extra || {}));
  };

  Framecast.prototype.connect = function () {
    if (this.stopped) return;
    var self = this;
    var ws;
    this.setState("connecting");
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.emit("error", e);
      return this.retry(null);
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    var opened = false;
    ws.onopen = function () {
      opened = true;
      self.attempt = 0;
      if (self.options.hello != null) ws.send(self.options.hello);
      self.setState("open");
      self.emit("open");
    };
    ws.onmessage = function (ev) {
      self.received++;
      var data = typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data);
      self.emit("message", data);
    };
    ws.onerror = function () { self.emit("error", new Error("websocket error")); };
    ws.onclose = function (ev) {
      if (self.ws !== ws) return;
      self.ws = null;
      self.emit("close", { code: ev.code, reason: ev.reason, wasOpen: opened });
      self.retry(ev);
    };
  };

  Framecast.prototype.retry = function (ev) {
    if (this.stopped || !this.options.reconnect) {
      this.setState("closed", ev ? { code: ev.code, reason: ev.reason } : {});
      return;
    }
    var base = Math.min(this.options.maxDelay, this.options.minDelay * Math.pow(2, this.attempt));
    var delay = Math.round(base / 2 + Math.random() * base / 2);
    this.attempt++;
    var self = this;
    this.setState("waiting", {
      delay: delay, at: Date.now() + delay,
      code: ev ? ev.code : 0, reason: ev ? ev.reason : ""
    });
    this.timer = setTimeout(function () { self.timer = null; self.connect(); }, delay);
  };

  // Sends one message (a string goes as text, an ArrayBuffer/Uint8Array as binary); false
  // when not connected (nothing is queued: the caller decides what a lost message means).
  Framecast.prototype.send = function (data) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(data);
    return true;
  };

  Framecast.prototype.close = function () {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.setState("closed");
  };

  // The chat room: joins as options.name (sent first on every connect) and pairs what arrives
  // into {name, text} ("chat" events). The server relays other people's messages only.
  Framecast.chat = function (options) {
    var fc = new Framecast(Object.assign({}, options, { hello: options.name }));
    var pendingName = null;
    fc.on("open", function () { pendingName = null; });
    fc.on("message", function (data) {
      var text = typeof data === "string" ? data : new TextDecoder().decode(data);
      if (pendingName === null) {
        pendingName = text;
      } else {
        fc.emit("chat", { name: pendingName, text: text });
        pendingName = null;
      }
    });
    return fc;
  };

  root.Framecast = Framecast;
  if (typeof module === "object" && module.exports) module.exports = Framecast;
})(typeof self !== "undefined" ? self : this);

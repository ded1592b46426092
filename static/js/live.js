/* Live updates of the run pages over websockets (runs.consumers); no build step.
 *
 * Run page (<section data-live-run="/ws/t/<tenant>/runs/<id>/">): each message carries a
 * run event with its timeline entry rendered by the server; it is added once, in seq order,
 * and the state block (status, progress, steps, approvals) is refreshed from the page's
 * ?state fragment. On reconnect the socket asks for the events after the last seq shown
 * (?after=<seq>), so nothing is lost. While the socket is down the page falls back to the
 * htmx poller it was rendered with (#run-poller), which uses the same last seq.
 *
 * Runs list (<div data-live-runs="/ws/t/<tenant>/runs/">): each message is a run's new
 * status, progress, tokens and cost for its row; a new run or a reconnect reloads the list.
 *
 * #live-status says in words whether the page is live, reconnecting or polling.
 */
(function () {
  "use strict";

  var RETRY_MS = [500, 1000, 2000, 4000, 8000, 15000]; // backoff, then every 15 s
  var POLL_AFTER_FAILURES = 2; // the htmx poller takes over after this many failed tries
  var STATE_EVERY_MS = 200; // at most one state refresh per this interval
  var ENDED_CLOSE_MS = 3000; // after a run's final event, stragglers may still come
  var FINAL_EVENTS = ["run.succeeded", "run.failed", "run.cancelled", "run.timed_out"];

  function socketUrl(path, query) {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + path + (query ? "?" + query : "");
  }

  function say(state, text) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.setAttribute("data-live", state);
    el.textContent = text;
  }

  /* A websocket that reconnects by itself with backoff until stopped or refused (44xx).
   * It counts as live once the server says the client is in sync (a *.synced message). */
  function LiveSocket(options) {
    this.options = options;
    this.failures = 0;
    this.socket = null;
    this.timer = null;
    this.stopped = false;
    var self = this;
    window.addEventListener("online", function () {
      if (self.timer !== null) {
        window.clearTimeout(self.timer);
        self.timer = null;
        self.open();
      }
    });
  }

  LiveSocket.prototype.open = function () {
    var self = this;
    if (self.stopped) return;
    var ws;
    try {
      ws = new WebSocket(self.options.url());
    } catch (err) {
      self.failed(0);
      return;
    }
    self.socket = ws;
    ws.addEventListener("message", function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (typeof message.kind === "string" && /\.synced$/.test(message.kind)) {
        self.failures = 0;
        self.options.onLive(message);
      }
      self.options.onMessage(message);
    });
    ws.addEventListener("close", function (event) {
      if (self.socket !== ws) return;
      self.socket = null;
      self.failed(event.code);
    });
  };

  LiveSocket.prototype.failed = function (code) {
    if (this.stopped) return;
    if (code >= 4400 && code < 4500) {
      this.stopped = true;
      this.options.onRefused(code);
      return;
    }
    this.failures += 1;
    var base = RETRY_MS[Math.min(this.failures, RETRY_MS.length) - 1];
    var delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.options.onDown(this.failures, delay);
    var self = this;
    this.timer = window.setTimeout(function () {
      self.timer = null;
      self.open();
    }, delay);
  };

  LiveSocket.prototype.stop = function () {
    this.stopped = true;
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.timer = null;
    var ws = this.socket;
    this.socket = null;
    if (ws) ws.close(1000);
  };

  function refusedText(code) {
    if (code === 4401) return "Live updates stopped: you are signed out. Sign in again and reload.";
    return "Live updates were refused (code " + code + "). Reload the page to see changes.";
  }

  // the run page --------------------------------------------------------------------------

  function followRun(section) {
    var timeline = document.getElementById("timeline-events");
    var seconds = section.getAttribute("data-live-seconds") || "1";
    var poller = document.getElementById("run-poller");
    var pollerHome = null;
    var pristinePoller = null;
    var polling = true;

    if (!timeline) return;
    if (!("WebSocket" in window)) {
      say("polling", "Live updates are not available in this browser: this page checks for new events every " + seconds + " s.");
      return;
    }
    if (poller) {
      // keep an untouched copy: htmx will not start polling again on an element it processed
      pristinePoller = poller.cloneNode(true);
      pollerHome = { parent: poller.parentNode, next: poller.nextSibling };
    }

    function stopPolling() {
      polling = false;
      var current = document.getElementById("run-poller");
      if (current) current.remove();
    }

    function startPolling() {
      if (polling || !pristinePoller) return;
      polling = true;
      var fresh = pristinePoller.cloneNode(true);
      pollerHome.parent.insertBefore(fresh, pollerHome.next && pollerHome.next.parentNode === pollerHome.parent ? pollerHome.next : null);
      if (window.htmx) window.htmx.process(fresh);
    }

    stopPolling(); // the socket replaces polling while it is up

    function afterInput() {
      return document.getElementById("timeline-after");
    }

    function lastSeq() {
      var input = afterInput();
      return input ? parseInt(input.value, 10) || 0 : 0;
    }

    function seqOf(item) {
      return parseInt((item.id || "").replace("event-", ""), 10) || 0;
    }

    function addEvent(message) {
      var input = afterInput();
      if (input && message.seq > lastSeq()) input.value = String(message.seq);
      if (document.getElementById("event-" + message.seq)) return; // shown already
      var holder = document.createElement("template");
      holder.innerHTML = message.html.trim();
      var item = holder.content.firstElementChild;
      if (!item) return;
      var last = timeline.lastElementChild;
      if (!last || seqOf(last) < message.seq) {
        timeline.appendChild(item);
        return;
      }
      var later = Array.prototype.find.call(timeline.children, function (li) {
        return seqOf(li) > message.seq;
      });
      timeline.insertBefore(item, later || null);
    }

    // the state block: one request at a time, at most every STATE_EVERY_MS -----------------
    var stateUrl = section.getAttribute("data-live-state");
    var stateTimer = null;
    var stateBusy = false;
    var stateAgain = false;

    function refreshState() {
      stateTimer = null;
      if (stateBusy) {
        stateAgain = true;
        return;
      }
      stateBusy = true;
      fetch(stateUrl, { headers: { "HX-Request": "true" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("state " + response.status);
          return response.text();
        })
        .then(function (html) {
          var box = document.getElementById("run-state");
          if (!box) return;
          box.innerHTML = html;
          if (window.htmx) window.htmx.process(box);
          // the end is said once the badge shows the final status too, never beside "Running"
          if (endPending && !box.querySelector(".live-dot")) {
            endPending = false;
            say("ended", "The run has ended: every event is shown.");
          }
        })
        .catch(function () {})
        .then(function () {
          stateBusy = false;
          if (endPending && ++endTries > 25) {
            endPending = false; // the state block cannot be had: say it all the same
            say("ended", "The run has ended: every event is shown.");
          }
          if (stateAgain || endPending) {
            // more changed meanwhile, or the block fetched predates the run's end
            stateAgain = false;
            scheduleState();
          }
        });
    }

    function scheduleState() {
      if (stateTimer === null) stateTimer = window.setTimeout(refreshState, STATE_EVERY_MS);
    }

    // htmx fragments (while polling) and socket messages may overlap: keep each event once
    document.body.addEventListener("htmx:afterSettle", function () {
      var seen = {};
      Array.prototype.slice.call(timeline.children).forEach(function (li) {
        if (li.id && seen[li.id]) li.remove();
        seen[li.id] = true;
      });
    });

    var ended = false;
    var endPending = false;
    var endTries = 0;
    var socket = new LiveSocket({
      url: function () {
        return socketUrl(section.getAttribute("data-live-run"), "after=" + lastSeq());
      },
      onLive: function () {
        stopPolling();
        if (!ended) say("live", "Live: new events appear as they happen.");
      },
      onMessage: function (message) {
        if (message.kind !== "run.event" || typeof message.html !== "string") return;
        addEvent(message);
        scheduleState();
        if (FINAL_EVENTS.indexOf(message.data && message.data.type) !== -1 && !ended) {
          ended = true;
          endPending = true; // announced by the state refresh scheduled above
          window.setTimeout(function () {
            socket.stop();
          }, ENDED_CLOSE_MS);
        }
      },
      onDown: function (failures, delay) {
        if (failures >= POLL_AFTER_FAILURES) startPolling();
        var meanwhile = polling ? " Meanwhile this page checks for new events every " + seconds + " s." : "";
        say("reconnecting", "Reconnecting to live updates (attempt " + failures + ", next in " + Math.ceil(delay / 1000) + " s)…" + meanwhile);
      },
      onRefused: function (code) {
        if (code !== 4401) startPolling(); // signed out: polling would only meet the sign-in page
        say("refused", refusedText(code));
      },
    });
    window.liveRun = socket; // for the browser's console (and tests)
    socket.open();
  }

  // the runs list -------------------------------------------------------------------------

  function followRuns(box) {
    if (!("WebSocket" in window)) {
      say("polling", "Live updates are not available in this browser: reload the page to see changes.");
      return;
    }
    var reloadTimer = null;
    var synced = false;

    function reloadList() {
      reloadTimer = null;
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("list " + response.status);
          return response.text();
        })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(box.id);
          if (fresh) box.innerHTML = fresh.innerHTML;
        })
        .catch(function () {});
    }

    function reloadSoon() {
      if (reloadTimer === null) reloadTimer = window.setTimeout(reloadList, 300);
    }

    function onFirstPage() {
      var page = new URLSearchParams(window.location.search).get("page");
      return !page || page === "1";
    }

    var socket = new LiveSocket({
      url: function () {
        return socketUrl(box.getAttribute("data-live-runs"), "");
      },
      onLive: function () {
        if (synced) reloadSoon(); // back after a break: what changed meanwhile is in the list
        synced = true;
        say("live", "Live: statuses and progress update as runs change.");
      },
      onMessage: function (message) {
        if (message.kind !== "run.updated" || !message.data || !message.cells) return;
        var rows = box.querySelectorAll('tr[data-run="' + Number(message.data.run) + '"]');
        if (!rows.length) {
          if (message.data.event === "run.created" && onFirstPage()) reloadSoon();
          return;
        }
        Array.prototype.forEach.call(rows, function (row) {
          if ((parseInt(row.getAttribute("data-seq"), 10) || 0) >= message.seq) return; // older
          row.setAttribute("data-seq", String(message.seq));
          Object.keys(message.cells).forEach(function (name) {
            var cell = row.querySelector('[data-cell="' + name + '"]');
            if (!cell) return;
            if (name === "status") cell.innerHTML = message.cells[name];
            else cell.textContent = message.cells[name];
          });
        });
      },
      onDown: function (failures, delay) {
        say("reconnecting", "Reconnecting to live updates (attempt " + failures + ", next in " + Math.ceil(delay / 1000) + " s)…");
      },
      onRefused: function (code) {
        say("refused", refusedText(code));
      },
    });
    window.liveRuns = socket;
    socket.open();
  }

  var run = document.querySelector("[data-live-run]");
  if (run) followRun(run);
  var runs = document.querySelector("[data-live-runs]");
  if (runs) followRuns(runs);
})();

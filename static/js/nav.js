/* The navigation's count of approvals waiting for you, kept current without a reload.
 *
 * The tenant's events socket says "approvals.changed" (never who or what: the count depends
 * on the member's role); the page then asks the server for its own count. The socket
 * reconnects with backoff; a refusal (44xx) ends it quietly, the count stays as rendered.
 */
(function () {
  "use strict";

  var MAX_DELAY_MS = 30000;

  function start() {
    var link = document.getElementById("nav-approvals");
    if (!link || !("WebSocket" in window)) return;
    var countUrl = link.getAttribute("data-count-url");
    var path = link.getAttribute("data-events-socket");
    var failures = 0;
    var busy = false;
    var again = false;

    function refresh() {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      fetch(countUrl, { headers: { "HX-Request": "true" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("count " + response.status);
          return response.text();
        })
        .then(function (html) {
          var slot = document.getElementById("nav-approvals-slot");
          if (slot) slot.innerHTML = html.trim();
        })
        .catch(function () {})
        .then(function () {
          busy = false;
          if (again) {
            again = false;
            refresh();
          }
        });
    }

    function connect() {
      var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      var socket = new WebSocket(scheme + window.location.host + path);
      socket.onopen = function () {
        if (failures > 0) refresh(); // something may have changed while we were away
        failures = 0;
      };
      socket.onmessage = function (message) {
        var data;
        try {
          data = JSON.parse(message.data);
        } catch (e) {
          return;
        }
        if (data && data.kind === "approvals.changed") refresh();
      };
      socket.onclose = function (event) {
        if (event.code >= 4400 && event.code < 4500) return; // refused: not for this member
        failures += 1;
        var delay = Math.min(MAX_DELAY_MS, 500 * Math.pow(2, failures)) * (0.5 + Math.random() / 2);
        window.setTimeout(connect, delay);
      };
    }

    connect();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

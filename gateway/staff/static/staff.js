// Live updates for the staff dashboard: server-sent events carry re-rendered HTML sections
// (escaped on the server). No libraries, no inline script (the pages' CSP forbids it).
(function () {
  "use strict";
  var printButton = document.getElementById("print-act");
  if (printButton) {
    printButton.addEventListener("click", function () { window.print(); });
  }
  var state = document.getElementById("live-state");
  if (!state) {
    return;
  }
  var source = null;
  // The words come translated from the page (data-live, data-reconnecting, data-unsupported).
  function word(name, fallback) {
    return state.getAttribute("data-" + name) || fallback;
  }

  function show(text, cls) {
    state.textContent = text;
    state.className = "badge " + cls;
  }

  function recheck() {
    fetch("/staff/api/summary", { credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) {
        window.location.assign("/staff/login");
      } else {
        connect();
      }
    }, function () {
      window.setTimeout(recheck, 5000);
    });
  }

  function connect() {
    if (!window.EventSource) {
      show(word("unsupported", "no live updates in this browser"), "warn");
      return;
    }
    source = new EventSource("/staff/events");
    source.addEventListener("update", function (event) {
      var data = JSON.parse(event.data);
      Object.keys(data.fragments).forEach(function (id) {
        var el = document.getElementById(id);
        if (el) {
          el.innerHTML = data.fragments[id];
        }
      });
      document.body.setAttribute("data-version", String(data.version));
      show(word("live", "live"), "ok");
    });
    source.addEventListener("expired", function () {
      source.close();
      window.location.assign("/staff/login");
    });
    source.onerror = function () {
      show(word("reconnecting", "reconnecting…"), "warn");
      if (source.readyState === EventSource.CLOSED) {
        window.setTimeout(recheck, 3000);
      }
    };
  }

  connect();
}());

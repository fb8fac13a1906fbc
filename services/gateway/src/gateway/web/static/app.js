// The few behaviours that need a script (kept out of the pages so the CSP stays script-src 'self').
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) return;
    var done = function () {
      var label = button.textContent;
      button.textContent = button.getAttribute("data-copied") || label;
      setTimeout(function () { button.textContent = label; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { field.select(); });
    } else {
      field.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* selected for manual copy */ }
    }
  });

  function tick() {
    document.querySelectorAll("time[data-countdown]").forEach(function (el) {
      var left = Math.floor((Date.parse(el.getAttribute("datetime")) - Date.now()) / 1000);
      if (isNaN(left)) return;
      if (left <= 0) { el.textContent = el.getAttribute("data-expired") || "0:00"; return; }
      var m = Math.floor(left / 60), s = left % 60;
      el.textContent = m + ":" + (s < 10 ? "0" : "") + s;
    });
  }
  tick();
  setInterval(tick, 1000);
})();

// Sign-in with Telegram without Telegram's scripts: its authorisation page comes back with the
// signed fields in the fragment (#tgAuthResult=<base64 JSON>); a Mini App gets its initData in
// the fragment (#tgWebAppData=...). Either is posted to the gateway, which checks the hash.
(function () {
  "use strict";

  function fragment(name) {
    var hash = window.location.hash.replace(/^#/, "");
    var parts = hash.split("&");
    for (var i = 0; i < parts.length; i++) {
      var kv = parts[i].split("=");
      if (kv[0] === name) return decodeURIComponent(parts[i].slice(name.length + 1));
    }
    return null;
  }

  var box = document.querySelector("[data-telegram-login]");
  if (box) {
    var status = box.querySelector("[data-telegram-status]");
    var fail = function () { status.textContent = status.getAttribute("data-failed"); };
    var raw = fragment("tgAuthResult");
    var fields = null;
    try {
      fields = raw && JSON.parse(atob(raw.replace(/-/g, "+").replace(/_/g, "/")));
    } catch (e) { fields = null; }
    history.replaceState(null, "", window.location.pathname);  // the fields leave the URL
    if (!fields) { fail(); return; }
    fetch(box.getAttribute("data-telegram-login"), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(fields)
    }).then(function (r) {
      if (r.ok) { window.location.assign(box.getAttribute("data-next")); } else { fail(); }
    }, fail);
  }

  var app = document.querySelector("form[data-mini-app]");
  if (app && !app.hasAttribute("data-failed")) {
    var tg = window.Telegram && window.Telegram.WebApp;
    var initData = (tg && tg.initData) || fragment("tgWebAppData");
    if (initData) {
      app.querySelector("input[name=init_data]").value = initData;
      app.submit();
    }
  }
})();

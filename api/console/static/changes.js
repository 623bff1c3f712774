// kycstate console: follows the change feed and appends new rows to the table.
// Every value is written with textContent, never as markup. Served as a file so the
// Content-Security-Policy needs no 'unsafe-inline'.
"use strict";
(function () {
  var body = document.getElementById("changes");
  var live = document.getElementById("live");
  if (!body || !window.fetch) { return; }
  var after = body.getAttribute("data-after") || "0";
  var feed = body.getAttribute("data-feed");
  var every = 2000;

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function row(c) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-test", "change-row");
    tr.setAttribute("data-seq", String(c.seq));
    tr.setAttribute("data-provider", c.provider);
    cell(tr, String(c.seq), "seq");
    var td = document.createElement("td");
    var a = document.createElement("a");
    a.className = "id";
    a.href = "/console/applicants/" + encodeURIComponent(c.applicantId) + "?provider=" + encodeURIComponent(c.provider);
    a.textContent = c.applicantId;
    td.appendChild(a);
    tr.appendChild(td);
    cell(tr, c.provider, "provider");
    cell(tr, c.externalUserId || "\u2014", "text");
    cell(tr, c.from + " \u2192 " + c.to, "move");
    var at = document.createElement("time");
    at.textContent = c.at;
    cell(tr, "").appendChild(at);
    return tr;
  }

  function say(text) { if (live) { live.textContent = text; } }

  function poll() {
    fetch(feed + "?after=" + encodeURIComponent(after), { credentials: "same-origin", cache: "no-store" })
      .then(function (res) {
        if (res.status === 401) { say("Signed out: sign in again to keep following."); return null; }
        return res.json().then(function (b) { return { ok: res.ok, b: b }; });
      })
      .then(function (r) {
        if (!r) { return; }
        if (!r.ok) { say("The feed answered an error: " + (r.b.error || "unknown") + "; retrying."); }
        else {
          r.b.changes.forEach(function (c) { body.appendChild(row(c)); });
          after = String(r.b.next);
          say("Following live: new changes appear below.");
        }
        setTimeout(poll, every);
      })
      .catch(function () { say("The feed is unreachable; retrying."); setTimeout(poll, every * 2); });
  }
  say("Following live: new changes appear below.");
  poll();
})();

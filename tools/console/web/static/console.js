// Patchfleet console: live rollout updates (Server-Sent Events) and host output tails.
// Everything is written with textContent and attributes, never as HTML.
(function () {
  "use strict";

  function $(sel, root) { return (root || document).querySelector(sel); }

  function setBar(rect, x, w) {
    if (!rect) return;
    if (x !== null) rect.setAttribute("x", String(x));
    rect.setAttribute("width", String(w));
  }

  function applyRollout(v) {
    var st = $("#r-state");
    st.textContent = v.state;
    st.className = "badge big " + v.state_class;
    $("#r-approved").textContent = v.approved_by || "—";
    var reason = $("#r-reason");
    reason.textContent = v.reason || "";
    reason.hidden = !v.reason;
    $("#r-summary").textContent = v.summary;
    setBar($("#r-bar"), null, v.percent);
    var budget = $("#r-budget");
    $("span", budget).textContent = v.budget.text;
    budget.classList.toggle("bad", v.budget.spent);
    (v.waves || []).forEach(function (w) {
      var row = document.querySelector('tr[data-wave="' + w.index + '"]');
      if (!row) return;
      var b = $(".w-state .badge", row);
      b.textContent = w.state;
      b.className = "badge " + (w.state === "completed" ? "ok" : w.state === "running" ? "run" : "idle");
      setBar($(".seg-ok", row), null, w.ok_pct);
      setBar($(".seg-bad", row), w.ok_pct, w.fail_pct);
      setBar($(".seg-run", row), w.ok_pct + w.fail_pct, w.run_pct);
      $(".w-text", row).textContent = w.text;
    });
    (v.hosts || []).forEach(function (h) {
      var row = document.querySelector('tr[data-host="' + CSS.escape(h.host_id) + '"]');
      if (!row) return;
      row.dataset.state = h.state;
      var b = $(".badge", row);
      b.textContent = h.state;
      b.className = "badge " + h.class;
      $(".note", row).textContent = h.note || "";
    });
    Object.keys(v.actions || {}).forEach(function (verb) {
      var f = document.querySelector('form[data-verb="' + verb + '"]');
      if (f) f.hidden = !v.actions[verb];
    });
  }

  function followRollout(root) {
    var id = root.dataset.rollout;
    var live = $("#r-live");
    var es = new EventSource("/rollouts/" + encodeURIComponent(id) + "/live");
    es.addEventListener("state", function (ev) {
      applyRollout(JSON.parse(ev.data));
      document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || 0) + 1);
    });
    es.onopen = function () { live.textContent = "live"; live.classList.add("on"); };
    es.onerror = function () { live.textContent = "reconnecting…"; live.classList.remove("on"); };
  }

  var MAX_TAIL = 64 * 1024;
  var tailSource = null;

  function followOutput(host, button) {
    if (tailSource) tailSource.close();
    document.querySelectorAll("tr.selected").forEach(function (r) { r.classList.remove("selected"); });
    var row = button.closest("tr");
    if (row) row.classList.add("selected");
    var pre = $("#tail");
    $("#tail-host").textContent = "— " + host;
    pre.textContent = "Waiting for output from " + host + "…\n";
    delete pre.dataset.following;
    tailSource = new EventSource("/hosts/" + encodeURIComponent(host) + "/tail");
    tailSource.addEventListener("open", function () { pre.dataset.following = host; });
    tailSource.addEventListener("chunk", function (ev) {
      var c = JSON.parse(ev.data);
      var text = pre.textContent + c.text;
      if (text.length > MAX_TAIL) text = text.slice(text.length - MAX_TAIL);
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = text;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-rollout]");
    if (root) followRollout(root);
    document.querySelectorAll("[data-tail]").forEach(function (b) {
      b.addEventListener("click", function () { followOutput(b.dataset.tail, b); });
    });
  });
})();

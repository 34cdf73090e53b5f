// Live progress of campaign runs on the campaign change page (campaigns/admin_dispatch.py).
// Polls the progress endpoint while any run shown is unfinished and updates its cell.
(function () {
  "use strict";

  function etaText(seconds) {
    if (seconds === null || seconds === undefined) return "\u2014";
    var minutes = Math.floor(seconds / 60), rest = Math.floor(seconds % 60);
    return minutes ? minutes + " min " + rest + " s" : rest + " s";
  }

  function update(cell, run) {
    cell.querySelector("progress").value = run.percent;
    cell.querySelector(".dispatch-progress-text").textContent =
      run.percent + "% (" + run.done + " / " + run.total + ") \u00b7 " +
      run.sent_per_minute + " sent/min \u00b7 ETA " + etaText(run.eta_seconds);
    cell.dataset.finished = run.finished ? "1" : "0";
    var row = cell.closest("tr");
    if (!row) return;
    ["status", "total", "sent", "denied", "failed", "expired", "skipped", "unknown", "cancelled"].forEach(
      function (field) {
        var td = row.querySelector("td.field-" + field);
        if (td) td.textContent = field === "status" ? run.status_label : run[field];
      }
    );
  }

  function poll(url, cells) {
    fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        var byId = {};
        data.runs.forEach(function (run) { byId[run.id] = run; });
        cells.forEach(function (cell) {
          var run = byId[cell.dataset.run];
          if (run) update(cell, run);
        });
        var busy = cells.some(function (cell) { return cell.dataset.finished !== "1"; });
        if (busy) window.setTimeout(function () { poll(url, cells); }, data.poll_ms || 2000);
      })
      .catch(function () { window.setTimeout(function () { poll(url, cells); }, 5000); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var groups = {};
    document.querySelectorAll(".dispatch-progress[data-url]").forEach(function (cell) {
      (groups[cell.dataset.url] = groups[cell.dataset.url] || []).push(cell);
    });
    Object.keys(groups).forEach(function (url) {
      var cells = groups[url];
      if (cells.some(function (cell) { return cell.dataset.finished !== "1"; })) poll(url, cells);
    });
  });
})();

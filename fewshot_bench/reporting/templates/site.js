// The results site's one script (no libraries, nothing fetched): click a header of a table.sortable to sort it
// (numbers as numbers, empty entries last either way), and filter the leaderboard with its selects.
"use strict";

(function () {
  function valueOf(cell, type) {
    if (!cell) return null;
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
    if (raw === "" || raw === "—") return null;
    if (type === "num") {
      var number = parseFloat(raw);
      return isNaN(number) ? null : number;
    }
    return raw.toLowerCase();
  }

  function sortTable(table, header) {
    var column = Array.prototype.indexOf.call(header.parentNode.children, header);
    var type = header.getAttribute("data-type") || "text";
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(header.parentNode.children, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = valueOf(a.cells[column], type), y = valueOf(b.cells[column], type);
      if (x === null || y === null) return (x === null) - (y === null);
      var order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function applyFilters(form) {
    var table = document.getElementById(form.getAttribute("data-table"));
    var selects = form.querySelectorAll("select[data-filter]");
    var rows = table.tBodies[0].rows, shown = 0;
    Array.prototype.forEach.call(rows, function (row) {
      var keep = Array.prototype.every.call(selects, function (select) {
        return !select.value || row.getAttribute("data-" + select.getAttribute("data-filter")) === select.value;
      });
      row.hidden = !keep;
      shown += keep ? 1 : 0;
    });
    form.querySelector(".count").textContent = shown + " of " + rows.length + " rows";
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (header) {
      header.tabIndex = 0;
      header.title = "sort by " + header.textContent.trim();
      header.addEventListener("click", function () { sortTable(table, header); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortTable(table, header); }
      });
    });
  });
  // The filters live in the address too (index.html#dataset=omniglot&shot=1): a filtered view can be bookmarked
  // and linked, from file:// as well.
  function readHash(form) {
    var wanted = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
      var parts = pair.split("=");
      if (parts.length === 2) wanted[decodeURIComponent(parts[0])] = decodeURIComponent(parts[1]);
    });
    form.querySelectorAll("select[data-filter]").forEach(function (select) {
      var value = wanted[select.getAttribute("data-filter")];
      var known = Array.prototype.some.call(select.options, function (o) { return o.value === value; });
      select.value = value !== undefined && known ? value : "";
    });
  }

  function writeHash(form) {
    var pairs = [];
    form.querySelectorAll("select[data-filter]").forEach(function (select) {
      if (select.value) pairs.push(encodeURIComponent(select.getAttribute("data-filter")) + "=" + encodeURIComponent(select.value));
    });
    history.replaceState(null, "", pairs.length ? "#" + pairs.join("&") : location.pathname);
  }

  document.querySelectorAll("form.filters").forEach(function (form) {
    form.addEventListener("change", function () { applyFilters(form); writeHash(form); });
    readHash(form);
    applyFilters(form);
    window.addEventListener("hashchange", function () { readHash(form); applyFilters(form); });
  });
})();

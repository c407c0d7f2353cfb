
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("th[data-col]");
  heads.forEach(function (head) {
    head.addEventListener("click", function () {
      var col = Number(head.dataset.col);
      var asc = head.classList.contains("sorted-desc") ||
        (!head.classList.contains("sorted-asc") && head.dataset.first === "asc");
      heads.forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
      head.classList.add(asc ? "sorted-asc" : "sorted-desc");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var text = head.dataset.kind === "text";
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.sort, y = b.cells[col].dataset.sort;
        if (text) { return asc ? x.localeCompare(y) : y.localeCompare(x); }
        var nx = x === "" ? NaN : Number(x), ny = y === "" ? NaN : Number(y);
        if (isNaN(nx) || isNaN(ny)) { return Number(isNaN(nx)) - Number(isNaN(ny)); }
        return asc ? nx - ny : ny - nx;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});

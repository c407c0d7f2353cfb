
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

document.querySelectorAll("[role=tablist]").forEach(function (list) {
  var buttons = list.querySelectorAll("button[data-tab]");
  var panels = list.parentNode.querySelectorAll(".tabpanel");
  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      buttons.forEach(function (b) { b.setAttribute("aria-selected", String(b === button)); });
      panels.forEach(function (panel) {
        panel.hidden = panel.dataset.panel !== button.dataset.tab;
      });
    });
  });
});

document.querySelectorAll(".curves").forEach(function (box) {
  var methods = box.querySelectorAll("input[data-method]");
  function apply() {
    methods.forEach(function (input) {
      box.querySelectorAll("polyline.m" + Number(input.dataset.method)).forEach(function (line) {
        line.classList.toggle("off", !input.checked);
      });
    });
    box.querySelectorAll("fieldset").forEach(function (group) {
      var family = group.querySelector("input[data-family]");
      var own = group.querySelectorAll("input[data-method]");
      var on = Array.prototype.filter.call(own, function (i) { return i.checked; }).length;
      family.checked = on === own.length;
      family.indeterminate = on > 0 && on < own.length;
    });
  }
  methods.forEach(function (input) { input.addEventListener("change", apply); });
  box.querySelectorAll("input[data-family]").forEach(function (family) {
    family.addEventListener("change", function () {
      family.closest("fieldset").querySelectorAll("input[data-method]").forEach(function (i) {
        i.checked = family.checked;
      });
      apply();
    });
  });
  box.querySelectorAll("button[data-show]").forEach(function (button) {
    button.addEventListener("click", function () {
      methods.forEach(function (i) { i.checked = button.dataset.show === "all"; });
      apply();
    });
  });
});

(function () {
  var box = document.querySelector(".lightbox");
  if (!box) { return; }
  var picture = box.querySelector("img"), caption = box.querySelector("figcaption");
  document.querySelectorAll("img.cell").forEach(function (cell) {
    cell.addEventListener("click", function () {
      picture.src = cell.src;
      picture.alt = cell.alt;
      caption.textContent = cell.alt;
      box.hidden = false;
    });
  });
  box.addEventListener("click", function () { box.hidden = true; });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { box.hidden = true; }
  });
})();

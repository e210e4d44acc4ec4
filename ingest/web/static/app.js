// NeurFlow explorer: the one script. Filters the class tables as you type; nothing else.
(function () {
  "use strict";
  var box = document.getElementById("class-filter");
  if (!box) { return; }
  box.addEventListener("input", function () {
    var text = box.value.trim().toLowerCase();
    var rows = document.querySelectorAll("tr.class-row");
    for (var i = 0; i < rows.length; i++) {
      var hay = rows[i].getAttribute("data-search") || "";
      rows[i].style.display = !text || hay.indexOf(text) >= 0 ? "" : "none";
    }
  });
}());

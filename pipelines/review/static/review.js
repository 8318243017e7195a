// kinpath review: the code search box and the keyboard shortcuts. No other script runs.
(function () {
  "use strict";
  function debounce(fn, ms) { let t; return function () { const a = arguments; clearTimeout(t); t = setTimeout(() => fn.apply(null, a), ms); }; }
  document.querySelectorAll("input.search").forEach(function (input) {
    const list = input.form.querySelector("ul.hits");
    const show = debounce(function () {
      const q = input.value.trim();
      if (q.length < 2) { list.hidden = true; return; }
      fetch("/api/codes?task=" + encodeURIComponent(input.dataset.task) + "&q=" + encodeURIComponent(q), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (hits) {
          list.innerHTML = "";
          hits.forEach(function (h) {
            const li = document.createElement("li"), b = document.createElement("button");
            b.type = "button"; b.className = "hit"; b.dataset.code = h.code;
            b.textContent = h.code + (h.name ? " — " + h.name : "");
            b.addEventListener("click", function () { input.value = h.code; list.hidden = true; input.focus(); });
            li.appendChild(b); list.appendChild(li);
          });
          list.hidden = hits.length === 0;
        });
    }, 150);
    input.addEventListener("input", show);
    input.addEventListener("keydown", function (e) { if (e.key === "Escape") { list.hidden = true; } });
  });
  document.addEventListener("keydown", function (e) {
    const tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (e.key === "a") {
      const open = document.querySelector("article.field.review:not(.decided) form.accept button:not([disabled])");
      if (open) { e.preventDefault(); open.form.submit(); }
    } else if (e.key === "n") {
      const next = document.getElementById("next");
      if (next) { e.preventDefault(); window.location = next.href; }
    } else if (e.key === "/") {
      const s = document.querySelector("article.field.review:not(.decided) input.search") || document.querySelector("input.search");
      if (s) { e.preventDefault(); s.focus(); }
    }
  });
})();

// Plumbline console: the only script, served by the collector (CSP
// script-src 'self'). It submits a filter form when a select changes;
// every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
  });
});

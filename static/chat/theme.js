// Light, dark or the system's choice: applied before the page paints (loaded without defer).
(function () {
  "use strict";
  var saved = null;
  try {
    saved = localStorage.getItem("theme");
  } catch (error) {
    saved = null;
  }
  if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
})();

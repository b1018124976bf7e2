// The theme, applied before the page paints (this script is loaded without defer).
// <html data-theme> is always the theme in effect, "light" or "dark", so each stylesheet states
// its dark colours once; <html data-theme-choice> is what the person picked: "light", "dark" or
// "system", which follows the system setting as it changes. The toggle is in shortcuts.js.
(function () {
  "use strict";
  var root = document.documentElement;
  var systemDark = window.matchMedia("(prefers-color-scheme: dark)");

  function apply() {
    var choice = root.dataset.themeChoice;
    root.dataset.theme =
      choice === "light" || choice === "dark" ? choice : systemDark.matches ? "dark" : "light";
  }

  var saved = null;
  try {
    saved = localStorage.getItem("theme");
  } catch (error) {
    saved = null;
  }
  root.dataset.themeChoice = saved === "light" || saved === "dark" ? saved : "system";
  apply();
  systemDark.addEventListener("change", apply);
  new MutationObserver(apply).observe(root, { attributeFilter: ["data-theme-choice"] });
})();

// Theme toggle and keyboard shortcuts (listed in the help dialog, `?` button or Ctrl+/).
/* global gettext, interpolate, pgettext */
(function () {
  "use strict";

  var THEMES = ["system", "light", "dark"];
  var THEME_NAMES = {
    system: pgettext("theme", "system"),
    light: pgettext("theme", "light"),
    dark: pgettext("theme", "dark"),
  };

  function currentTheme() {
    return document.documentElement.dataset.themeChoice || "system";
  }

  function applyTheme(theme) {
    document.documentElement.dataset.themeChoice = theme; // theme.js puts it in effect
    try {
      if (theme === "system") localStorage.removeItem("theme");
      else localStorage.setItem("theme", theme);
    } catch (error) {
      /* private mode: the choice lasts for this page only */
    }
    document.querySelectorAll("[data-action=toggle-theme]").forEach(function (button) {
      button.dataset.theme = theme;
      var name = { theme: THEME_NAMES[theme] || theme };
      button.title = interpolate(gettext("Theme: %(theme)s (click to change)"), name, true);
      button.setAttribute("aria-label", interpolate(gettext("Theme: %(theme)s"), name, true));
    });
  }

  function openHelp() {
    var dialog = document.getElementById("shortcuts");
    if (dialog && !dialog.open) dialog.showModal();
  }

  function composer() {
    return document.querySelector("#composer textarea");
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-action=toggle-theme]")) {
      var next = THEMES[(THEMES.indexOf(currentTheme()) + 1) % THEMES.length];
      applyTheme(next);
    }
    if (event.target.closest("[data-action=show-shortcuts]")) openHelp();
    if (event.target.closest("[data-action=close-dialog]")) {
      event.target.closest("dialog").close();
    }
  });

  document.addEventListener("keydown", function (event) {
    var mod = event.ctrlKey || event.metaKey;
    var key = event.key.toLowerCase();
    if (mod && event.shiftKey && key === "o") {
      event.preventDefault();
      window.location.href = "/new/";
    } else if (event.shiftKey && key === "escape") {
      event.preventDefault();
      var textarea = composer();
      if (textarea) textarea.focus();
    } else if (mod && key === "/") {
      event.preventDefault();
      openHelp();
    } else if (key === "arrowup" && event.target === composer() && composer().value === "") {
      // Up in an empty composer edits your last message, as in most chat apps.
      var edits = document.querySelectorAll("#transcript [data-role=user] [data-action=edit]");
      if (edits.length) {
        event.preventDefault();
        edits[edits.length - 1].click();
      }
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    applyTheme(currentTheme());
  });
})();

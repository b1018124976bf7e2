// Compare (chat/compare.py): the header's Compare button shows the composer's columns, whose
// fields then go with the message (`columns`, read by chat.js's send frame; a form post goes to
// the compare URL); add and remove columns; "Compare with..." opens its dialog; on a phone the
// columns are swiped or picked by their tabs, each tab showing its column's status.
(function () {
  "use strict";

  var MIN = 2;

  function setupOf(form) {
    return form ? form.querySelector("#compare-setup") : null;
  }

  function on(setup) {
    return !!setup && !setup.disabled && !setup.hidden;
  }

  function columnSets(setup) {
    return Array.prototype.slice.call(setup.querySelectorAll("[data-testid=compare-setup-column]"));
  }

  function shownCount(setup) {
    return columnSets(setup).filter(function (c) { return !c.disabled; }).length;
  }

  function show(setup, count) {
    var sets = columnSets(setup);
    count = Math.max(MIN, Math.min(sets.length, count));
    sets.forEach(function (column, n) {
      column.hidden = n >= count;
      column.disabled = n >= count;
    });
    setup.querySelector("[data-role=total]").value = String(count);
    setup.dataset.shown = String(count);
    var add = setup.querySelector("[data-action=add-column]");
    var remove = setup.querySelector("[data-action=remove-column]");
    if (add) add.hidden = count >= sets.length;
    if (remove) remove.hidden = count <= MIN;
  }

  // The columns as the socket's `compare` frame carries them, or null when compare is off.
  function columns(form) {
    var setup = setupOf(form);
    if (!on(setup)) return null;
    return columnSets(setup).filter(function (c) { return !c.disabled; }).map(function (column) {
      var values = {};
      column.querySelectorAll("input, select").forEach(function (field) {
        var name = field.name.replace(/^columns-\d+-/, "");
        if (name) values[name] = field.value;
      });
      return values;
    });
  }

  function toggle(form, wanted) {
    var setup = setupOf(form);
    var button = document.querySelector("[data-testid=compare]");
    if (!setup) return false;
    var next = typeof wanted === "boolean" ? wanted : !on(setup);
    setup.hidden = !next;
    setup.disabled = !next;
    if (next) show(setup, shownCount(setup) || MIN);
    if (button) {
      button.setAttribute("aria-pressed", next ? "true" : "false");
      button.classList.toggle("active", next);
    }
    form.classList.toggle("comparing", next);
    var send = form.querySelector("[data-testid=send]");
    if (send) {
      send.textContent = next ? gettext("Compare") : gettext("Send");
      send.setAttribute("aria-label", send.textContent);
    }
    if (next) {
      var first = setup.querySelector("select, input:not([type=hidden])");
      if (first) first.focus();
    } else {
      var box = form.querySelector("textarea[name=text]");
      if (box) box.focus();
    }
    return true;
  }

  window.PlaygroundCompare = { columns: columns };

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-action]");
    if (!target) return;
    var action = target.getAttribute("data-action");
    var form = document.getElementById("composer");
    if (action === "toggle-compare") {
      // Without the composer's columns on this page (a plain link then), the page comes with them.
      if (toggle(form)) event.preventDefault();
      var menu = target.closest("details");
      if (menu) menu.open = false;
    } else if (action === "add-column" || action === "remove-column") {
      var setup = target.closest(".compare-setup");
      if (!setup) return;
      event.preventDefault();
      show(setup, shownCount(setup) + (action === "add-column" ? 1 : -1));
    } else if (action === "show-column") {
      var grid = target.closest("[data-testid=compare-grid]");
      var column = grid && grid.querySelector("[data-testid=compare-column][data-column='" + target.dataset.column + "']");
      if (column) column.scrollIntoView({ behavior: "smooth", block: "nearest", inline: "start" });
      select(grid, target.dataset.column);
    } else if (action === "close-dialog") {
      var dialog = target.closest("dialog");
      if (dialog) { event.preventDefault(); dialog.close(); }
    }
  });

  // A form post (no socket open) in compare mode goes to the compare URL with its columns.
  document.addEventListener("htmx:configRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.id === "composer" && on(setupOf(form)) && form.dataset.compareUrl) {
      event.detail.path = form.dataset.compareUrl;
    }
  });

  // "Compare with...": its dialog, fetched into its slot, opens; a run that was taken closes it.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "compare-again-slot") {
      var dialog = document.getElementById("compare-again");
      if (dialog && !dialog.open) dialog.showModal();
    }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (!form || form.getAttribute("data-role") !== "compare-again-form") return;
    if (event.detail.xhr && event.detail.xhr.status === 204) {
      var dialog = form.closest("dialog");
      if (dialog) dialog.close();
    }
  });

  // Tabs (a phone's way through the columns): the one in view is selected, each shows its status.
  function select(grid, number) {
    if (!grid) return;
    grid.querySelectorAll("[data-testid=compare-tab]").forEach(function (tab) {
      tab.setAttribute("aria-selected", tab.dataset.column === String(number) ? "true" : "false");
    });
  }

  function syncTabs(root) {
    root.querySelectorAll("[data-testid=compare-grid]").forEach(function (grid) {
      grid.querySelectorAll("[data-testid=compare-tab]").forEach(function (tab) {
        var reply = grid.querySelector("[data-testid=compare-column][data-column='" + tab.dataset.column + "'] [data-testid=message]");
        if (reply && tab.dataset.status !== reply.dataset.status) tab.dataset.status = reply.dataset.status;
      });
      var row = grid.querySelector(".compare-row");
      if (row && !row.dataset.watched) {
        row.dataset.watched = "1";
        row.addEventListener("scroll", function () {
          var width = row.clientWidth || 1;
          select(grid, Math.round(Math.abs(row.scrollLeft) / width) + 1);
        }, { passive: true });
      }
    });
  }

  function watch() {
    // The chat's live region (the transcript is replaced under it), or a share's transcript.
    var live = document.getElementById("live") || document.querySelector(".transcript");
    if (!live) return;
    syncTabs(live);
    new MutationObserver(function () {
      if (live.querySelector("[data-testid=compare-grid]")) syncTabs(live);
    }).observe(live, {
      subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"],
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", watch);
  else watch();
})();

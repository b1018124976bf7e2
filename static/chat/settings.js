// The settings panel saves each change as it is made: the panel is posted with `autosave` a
// moment after typing stops (at once for a choice or a box), the answer says what was saved,
// and a wrong field shows its reason in place while the others are kept. The header's model
// picker is the panel's model field seen from the header: choosing there changes the panel's.
/* global gettext */
(function () {
  "use strict";

  var TYPING_DELAY = 400;
  var IGNORED = { csrfmiddlewaretoken: 1, conversation: 1, preset_name: 1 };
  var timer = null;
  var inFlight = false;
  var again = false;

  function panel() {
    return document.getElementById("settings-form");
  }

  function status(text, failed) {
    var form = panel();
    var box = form && form.querySelector("[data-testid=settings-status]");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("failed", !!failed);
  }

  function showErrors(form, errors) {
    form.querySelectorAll(".field").forEach(function (field) {
      var input = field.querySelector("[name]");
      if (!input) return;
      var messages = errors[input.name];
      var box = field.querySelector(".error");
      field.classList.toggle("has-error", !!messages);
      if (input.setAttribute) input.setAttribute("aria-invalid", messages ? "true" : "false");
      if (!messages) {
        if (box) box.remove();
        return;
      }
      if (!box) {
        box = document.createElement("div");
        box.className = "error";
        box.setAttribute("data-testid", "error");
        box.setAttribute("role", "alert");
        field.appendChild(box);
      }
      box.replaceChildren();
      messages.forEach(function (message) {
        var p = document.createElement("p");
        p.textContent = message;
        box.appendChild(p);
      });
    });
    var general = form.querySelector("[data-settings-general]");
    if (general) general.textContent = (errors.__all__ || []).join(" ");
  }

  async function save() {
    var form = panel();
    if (!form) return;
    if (inFlight) {
      again = true; // the latest values go when this one is answered
      return;
    }
    inFlight = true;
    again = false;
    status(gettext("Saving…"));
    var data = new FormData(form);
    data.set("autosave", "1");
    try {
      var response = await fetch(form.action, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-CSRFToken": data.get("csrfmiddlewaretoken") || "" },
      });
      var answer = null;
      try {
        answer = await response.json();
      } catch (e) {
        answer = null;
      }
      if (!answer) {
        status(
          response.status === 403
            ? gettext("Not saved: reload the page and log in again.")
            : gettext("Not saved: the server did not answer. Try again."),
          true
        );
      } else {
        showErrors(form, answer.errors || {});
        status(answer.status, !answer.saved || Object.keys(answer.errors || {}).length > 0);
        form.dispatchEvent(new CustomEvent("settings:saved", { bubbles: true, detail: answer }));
      }
    } catch (e) {
      status(gettext("Not saved: the server cannot be reached. It will be tried again on the next change."), true);
    } finally {
      inFlight = false;
      if (again) save();
    }
  }

  function later(delay) {
    clearTimeout(timer);
    timer = setTimeout(save, delay);
  }

  function watched(target) {
    return target && target.name && !IGNORED[target.name] && target.closest("#settings-form");
  }

  document.addEventListener("input", function (event) {
    if (!watched(event.target)) return;
    var typing = event.target.tagName === "TEXTAREA" || /^(text|number|search)$/.test(event.target.type || "text");
    if (typing) later(TYPING_DELAY);
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.id === "model-picker") {
      var field = panel() && panel().querySelector("[name=model]");
      if (field) {
        field.value = target.value;
        field.dispatchEvent(new Event("change", { bubbles: true }));
      }
      return;
    }
    if (!watched(target)) return;
    if (target.name === "model") syncPicker();
    later(target.tagName === "SELECT" || target.type === "checkbox" ? 0 : 50);
  });

  // Enter in a one-line field would submit the whole form the old way: save instead.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !watched(event.target) || event.target.tagName !== "INPUT") return;
    event.preventDefault();
    later(0);
  });

  function syncPicker() {
    var picker = document.getElementById("model-picker");
    var field = panel() && panel().querySelector("[name=model]");
    if (picker && field && picker.value !== field.value) picker.value = field.value;
  }

  // A preset applied replaces the panel: the picker follows.
  document.addEventListener("htmx:afterSwap", syncPicker);
  document.documentElement.classList.add("settings-autosave");
})();

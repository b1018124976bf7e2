// The chat page's behaviour: keyboard, scrolling, live sync. No inline script anywhere (CSP).
(function () {
  "use strict";

  function transcript() {
    return document.getElementById("transcript");
  }

  function lastMessageId() {
    var messages = document.querySelectorAll("#transcript [data-testid=message]");
    return messages.length ? Number(messages[messages.length - 1].dataset.id) : 0;
  }

  function isStreaming() {
    return document.querySelector('#transcript [data-status="streaming"]') !== null;
  }

  // Follow the answer as it grows, unless the reader scrolled up to read something else.
  var stickToBottom = true;
  function scroller() {
    return document.getElementById("scroller");
  }
  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }
  function scrollToBottom() {
    var el = scroller();
    if (el) el.scrollTop = el.scrollHeight;
  }
  document.addEventListener(
    "scroll",
    function (event) {
      if (event.target === scroller()) stickToBottom = nearBottom(event.target);
    },
    true
  );

  function grow(textarea) {
    textarea.style.height = "auto";
    textarea.style.height = Math.min(textarea.scrollHeight, window.innerHeight * 0.4) + "px";
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches("#composer textarea")) grow(event.target);
  });

  // Enter sends, Shift+Enter is a new line; nothing is sent while a reply is streaming.
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (!target.matches || !target.matches("#composer textarea")) return;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    if (isStreaming()) return;
    if (target.value.trim() === "") return;
    target.form.requestSubmit(target.form.querySelector("[data-testid=send]"));
  });

  // Escape stops the reply that is streaming.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || !isStreaming()) return;
    var stop = document.querySelector("[data-testid=stop]");
    if (stop) stop.click();
  });

  // On every (re)connect, ask for what this page has not seen yet.
  document.addEventListener("htmx:wsOpen", function (event) {
    var streaming = Array.prototype.map.call(
      document.querySelectorAll('#transcript [data-status="streaming"]'),
      function (el) { return Number(el.dataset.id); }
    );
    event.detail.socketWrapper.send(
      JSON.stringify({ action: "sync", after: lastMessageId(), streaming: streaming })
    );
  });

  document.addEventListener("htmx:wsBeforeMessage", function () {
    var el = scroller();
    if (el) stickToBottom = stickToBottom || nearBottom(el);
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    if (stickToBottom) scrollToBottom();
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var textarea = document.querySelector("#composer textarea");
    if (textarea && event.target.id === "composer") {
      grow(textarea);
      stickToBottom = true;
    }
  });

  // Copy buttons (code samples).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action=copy]");
    if (!button) return;
    event.preventDefault();
    var source = document.getElementById(button.dataset.copyTarget);
    if (!source || !navigator.clipboard) return;
    var text = source.content ? source.content.textContent : source.textContent;
    navigator.clipboard.writeText(text).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    });
  });

  // Edit a sent message in place; saving sends it as a new version (a sibling).
  document.addEventListener("click", function (event) {
    var edit = event.target.closest("[data-action=edit]");
    if (edit) {
      var form = document.getElementById(edit.getAttribute("aria-controls"));
      if (form) {
        form.hidden = false;
        form.querySelector("textarea").focus();
      }
    }
    var cancel = event.target.closest("[data-action=cancel-edit]");
    if (cancel) cancel.closest("form").hidden = true;
  });

  // A refused import explains itself in place (400 malformed, 413 too big, 507 no space).
  document.addEventListener("htmx:beforeSwap", function (event) {
    var form = event.detail.elt.closest && event.detail.elt.closest("[data-testid=import-form]");
    if (form && [400, 413, 507].indexOf(event.detail.xhr.status) >= 0) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // Phone layout: the conversation list slides over the chat.
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-action=toggle-sidebar]");
    if (toggle) document.body.classList.toggle("sidebar-open");
    var settings = event.target.closest("[data-action=toggle-settings]");
    if (settings) document.body.classList.toggle("settings-open");
  });

  document.addEventListener("DOMContentLoaded", function () {
    scrollToBottom();
    var textarea = document.querySelector("#composer textarea");
    if (textarea) grow(textarea);
  });
})();

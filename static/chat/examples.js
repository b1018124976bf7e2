// The empty chat's example prompts: a text example fills the composer; an image, audio or video
// one fills it and opens the file picker for that kind (the composer's own file input, its
// filter narrowed for this once); the microphone one starts recording (the composer's record
// button, static/chat/attachments.js).
(function () {
  "use strict";

  function fill(text) {
    var box = document.querySelector("textarea[name=text]");
    if (!box) return;
    box.value = text;
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  function pick(accept) {
    var input = document.querySelector("#composer input[type=file][name=files]");
    if (!input) return;
    var usual = input.getAttribute("accept");
    input.setAttribute("accept", accept);
    var restore = function () {
      if (usual === null) input.removeAttribute("accept");
      else input.setAttribute("accept", usual);
    };
    input.addEventListener("change", restore, { once: true });
    input.addEventListener("cancel", restore, { once: true });
    input.click();
  }

  document.addEventListener("click", function (event) {
    var example = event.target.closest("[data-example-text]");
    if (!example) return;
    fill(example.getAttribute("data-example-text"));
    var kind = example.getAttribute("data-example-kind");
    if (kind === "microphone") {
      var record = document.querySelector("#composer [data-action=record]");
      if (record) record.click();
    } else if (kind) {
      pick(example.getAttribute("data-example-accept"));
    }
  });
})();

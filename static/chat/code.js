/* The Copy button of fenced code blocks in rendered replies (chat/rendering.py). One listener
   for the whole page, so blocks that arrive later over the WebSocket copy too. It copies the
   code element's text: not the language label, nothing around it. */
/* global gettext */
(function () {
  "use strict";

  function say(button, text) {
    button.textContent = text;
    clearTimeout(button.copyReset);
    button.copyReset = setTimeout(function () { button.textContent = gettext("Copy"); }, 1500);
  }

  // Without the async clipboard (a page served over plain HTTP to another machine): select
  // the code and let the browser copy the selection.
  function copyBySelection(code) {
    var selection = window.getSelection();
    var range = document.createRange();
    range.selectNodeContents(code);
    selection.removeAllRanges();
    selection.addRange(range);
    var done = false;
    try { done = document.execCommand("copy"); } catch (error) { done = false; }
    selection.removeAllRanges();
    return done;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-testid=copy-code]");
    if (!button) return;
    var block = button.closest(".code-block");
    var code = block && block.querySelector("pre > code");
    if (!code) return;
    event.preventDefault();
    var text = code.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { say(button, gettext("Copied")); },
        function () { say(button, copyBySelection(code) ? gettext("Copied") : gettext("Copy failed")); }
      );
    } else {
      say(button, copyBySelection(code) ? gettext("Copied") : gettext("Copy failed"));
    }
  });
})();

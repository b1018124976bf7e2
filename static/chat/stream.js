// A streaming reply's deltas (chat/frames.py), applied to the page: text appended to the open
// tail of the answer or the reasoning, and Markdown blocks that completed put in before it, the
// tail then keeping only the text after them. Snapshots and the finished message come as HTML
// for htmx; these are the frames that arrive twenty times a second.
(function () {
  "use strict";

  function tailOf(id, part) {
    return document.getElementById("message-" + id + "-" + part);
  }

  // The element completed blocks go in before: the answer's tail paragraph, or the reasoning's
  // tail itself.
  function anchorOf(tail, part) {
    return part === "text" ? tail.parentElement : tail;
  }

  function append(tail, text) {
    if (text) tail.appendChild(document.createTextNode(text));
  }

  function complete(tail, part, html, keep) {
    // Text still being revealed is shown first, so the tail's whole text is in the page.
    tail.dispatchEvent(new CustomEvent("reveal:finish", { bubbles: true }));
    anchorOf(tail, part).insertAdjacentHTML("beforebegin", html);
    var text = tail.textContent;
    // What the blocks took is gone; the blank lines between them and the tail are the tail's
    // margin.
    text = text.slice(Math.max(0, text.length - keep)).replace(/^\n+/, "");
    if (text !== tail.textContent) tail.textContent = text;
  }

  document.addEventListener("playground:frame", function (event) {
    var frame = event.detail;
    if (typeof frame.d !== "number") return;
    var text = tailOf(frame.d, "text");
    var reasoning = tailOf(frame.d, "reasoning");
    var body = frame.body || "";
    var split = typeof frame.b === "number" ? frame.b : body.length;
    if (text) {
      append(text, frame.t);
      if (typeof frame.k === "number") complete(text, "text", body.slice(0, split), frame.k);
    }
    if (reasoning) {
      append(reasoning, frame.r);
      if (typeof frame.rk === "number") {
        complete(reasoning, "reasoning", typeof frame.k === "number" ? body.slice(split) : body, frame.rk);
      }
    }
    document.dispatchEvent(new CustomEvent("playground:streamed"));
  });
})();

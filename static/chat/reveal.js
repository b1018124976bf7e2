// A streaming reply's new text is revealed smoothly at the display's rate: the server sends
// about 20 frames a second; each frame's text appears over the next few animation frames
// instead of all at once, and a Markdown block that completes fades in lightly. Nothing more
// is asked of the server. With "reduce motion" set, text shows as it arrives.
(function () {
  "use strict";

  var reduced = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)");
  function still() {
    return reduced && reduced.matches;
  }

  // About a server frame's worth of display frames (50 ms at 60 Hz): what is queued is shown
  // by then, so the reveal never falls behind the stream.
  var FRAMES_TO_CATCH_UP = 3;
  var queue = []; // {node, text, shown}
  var ticking = false;

  function isTail(el) {
    return el && el.id && /^message-\d+-(text|reasoning)$/.test(el.id);
  }

  function isRegion(el) {
    return el && el.id && /^message-\d+-(text|reasoning)-md$/.test(el.id);
  }

  function cut(text, at) {
    // Never between the two halves of a surrogate pair.
    var code = text.charCodeAt(at - 1);
    return code >= 0xd800 && code <= 0xdbff ? at + 1 : at;
  }

  function tick() {
    var pending = 0;
    queue = queue.filter(function (item) {
      return item.node.isConnected && item.shown < item.text.length;
    });
    queue.forEach(function (item) {
      pending += item.text.length - item.shown;
    });
    var budget = Math.ceil(pending / FRAMES_TO_CATCH_UP);
    // A reader following the reply stays at its end as the text grows.
    var scroller = document.getElementById("scroller");
    var following = scroller && scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
    queue.forEach(function (item) {
      if (budget <= 0) return;
      var step = Math.min(budget, item.text.length - item.shown);
      item.shown = Math.min(item.text.length, cut(item.text, item.shown + step));
      budget -= step;
      item.node.data = item.text.slice(0, item.shown);
    });
    queue = queue.filter(function (item) {
      return item.shown < item.text.length;
    });
    if (following) scroller.scrollTop = scroller.scrollHeight;
    if (queue.length) {
      window.requestAnimationFrame(tick);
    } else {
      ticking = false;
    }
  }

  function reveal(node) {
    if (!node.data) return;
    queue.push({ node: node, text: node.data, shown: 0 });
    node.data = "";
    if (!ticking) {
      ticking = true;
      window.requestAnimationFrame(tick);
    }
  }

  function fadeIn(el) {
    if (el.animate) el.animate([{ opacity: 0.35 }, { opacity: 1 }], { duration: 160, easing: "ease-out" });
  }

  // The tail's blank lines before its first text are the gap between blocks, which the tail's
  // own margin already shows (the server sends the tail without them).
  function trimLeading(node) {
    for (var before = node.previousSibling; before; before = before.previousSibling) {
      if (before.data || queue.some(function (item) { return item.node === before; })) return;
    }
    var trimmed = node.data.replace(/^\n+/, "");
    if (trimmed !== node.data) node.data = trimmed;
  }

  function watch(records) {
    records.forEach(function (record) {
      Array.prototype.forEach.call(record.addedNodes, function (node) {
        if (node.nodeType === Node.TEXT_NODE && isTail(record.target)) trimLeading(node);
      });
    });
    if (still()) return;
    var replaced = new Set();
    records.forEach(function (record) {
      if (record.removedNodes.length) replaced.add(record.target);
    });
    records.forEach(function (record) {
      var target = record.target;
      Array.prototype.forEach.call(record.addedNodes, function (node) {
        if (node.nodeType === Node.TEXT_NODE && isTail(target) && !replaced.has(target)) {
          reveal(node); // appended text; a replaced tail (blocks took its start) shows at once
        } else if (
          node.nodeType === Node.ELEMENT_NODE &&
          isRegion(target) &&
          !replaced.has(target) &&
          !/-(tail|reasoning)$/.test(node.id || "")
        ) {
          fadeIn(node); // a block that completed
        }
      });
    });
  }

  // Text queued inside an element shown whole at once (stream.js, before the element's text
  // is cut where Markdown blocks took it).
  document.addEventListener("reveal:finish", function (event) {
    queue = queue.filter(function (item) {
      if (!event.target.contains(item.node)) return true;
      item.node.data = item.text;
      return false;
    });
  });

  function start() {
    var live = document.getElementById("live");
    if (!live || !window.MutationObserver) return;
    new MutationObserver(watch).observe(live, { childList: true, subtree: true });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

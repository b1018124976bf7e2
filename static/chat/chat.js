// The chat page's behaviour: keyboard, scrolling, live sync. No inline script anywhere (CSP).
/* global gettext, interpolate */
(function () {
  "use strict";

  // Numbers as the page's language writes them (no grouping: "100000", as the server says it).
  var LANG = document.documentElement.lang || "en";
  function number(n) {
    try {
      return new Intl.NumberFormat(LANG, { useGrouping: false }).format(n);
    } catch (error) {
      return String(n);
    }
  }

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

  // The page's socket while it is open: messages go over it (see below).
  var socket = null;

  // On every (re)connect, ask for what this page has not seen yet.
  document.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail.socketWrapper;
    var streaming = Array.prototype.map.call(
      document.querySelectorAll('#transcript [data-status="streaming"]'),
      function (el) { return Number(el.dataset.id); }
    );
    event.detail.socketWrapper.send(
      JSON.stringify({ action: "sync", after: lastMessageId(), streaming: streaming })
    );
  });

  // JSON frames are for the page's scripts, not HTML for htmx: each becomes a playground:frame
  // event (stream.js applies a streaming reply's deltas, speech.js plays "audio"; "sent" and
  // "refused" answer a message sent below). A delta's JSON line may be followed by the HTML
  // of the Markdown blocks it completed: that is the frame's `body`.
  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    var text = event.detail.message;
    if (typeof text !== "string" || text.charAt(0) !== "{") return;
    event.preventDefault();
    var end = text.indexOf("\n");
    var frame;
    try {
      frame = JSON.parse(end === -1 ? text : text.slice(0, end));
    } catch (error) {
      return;
    }
    if (end !== -1) frame.body = text.slice(end + 1);
    document.dispatchEvent(new CustomEvent("playground:frame", { detail: frame }));
  });
  document.addEventListener("playground:streamed", function () {
    if (stickToBottom) scrollToBottom();
  });

  // Sending: over the page's open socket, so the reply's request leaves without waiting for a
  // new HTTP request; with none open (a new chat, a reconnect under way) the form posts as usual.
  // Either way the text stays in the box until the message is taken, and reasons for refusing
  // it appear in place.
  var sending = false;

  function composerError(form, html) {
    var old = form.querySelector(".composer-error");
    if (old) old.remove();
    if (html) form.insertAdjacentHTML("afterbegin", html);
  }

  function sendEnded(sent, errorHtml) {
    sending = false;
    busyEnded();
    var form = document.getElementById("composer");
    if (!form) return;
    composerError(form, errorHtml);
    var textarea = form.querySelector("textarea[name=text]");
    if (sent && textarea) {
      textarea.value = "";
      grow(textarea);
      stickToBottom = true;
    }
    var button = form.querySelector("[data-testid=send]");
    if (button) button.disabled = false;
    if (textarea) textarea.focus();
    form.dispatchEvent(new CustomEvent("composer:done", { bubbles: true, detail: { sent: sent } }));
  }

  // The composer's limit is the server's (rendered into the page): a longer text is refused
  // here with the server's reason, before anything is sent, and stays in the box.
  function overLimit(form) {
    var textarea = form.querySelector("textarea[name=text]");
    var limit = textarea ? Number(textarea.dataset.maxLength) : 0;
    if (!limit) return "";
    var length = Array.from(textarea.value).length; // characters, as the server counts them
    if (length <= limit) return "";
    return interpolate(
      gettext("A message can be at most %(limit)s characters (this one has %(length)s)."),
      { limit: number(limit), length: number(length) },
      true
    );
  }

  // A server too busy to take a message answers "busy" (a socket frame, or 503 to the form
  // post) with the seconds to wait: the page says so beside the composer, keeps the text and
  // sends it again after that wait (doubling, at most BUSY_WAIT_CAP s), giving up after
  // BUSY_TRIES tries with the text still in the box.
  var BUSY_TRIES = 5;
  var BUSY_WAIT_CAP = 8;
  var busyTries = 0;
  var busyTimer = null;

  function busyStatus(form, text) {
    var old = form.querySelector(".composer-busy");
    if (old) old.remove();
    if (!text) return;
    var el = document.createElement("p");
    el.className = "composer-busy";
    el.setAttribute("role", "status");
    el.setAttribute("data-testid", "busy");
    el.textContent = text;
    var box = form.querySelector(".composer-box");
    form.insertBefore(el, box);
  }

  function busyEnded() {
    busyTries = 0;
    if (busyTimer) clearTimeout(busyTimer);
    busyTimer = null;
    var form = document.getElementById("composer");
    if (form) busyStatus(form, "");
  }

  function sendFrame(form) {
    var data = new FormData(form);
    var frame = { action: "send", text: data.get("text") || "", attachments: data.getAll("attachments") };
    // In compare mode (static/chat/compare.js) the message goes to every column.
    var columns = window.PlaygroundCompare && window.PlaygroundCompare.columns(form);
    if (columns) {
      frame.action = "compare";
      frame.columns = columns;
    }
    return JSON.stringify(frame);
  }

  function onBusy(retryAfter) {
    var form = document.getElementById("composer");
    if (!form) return;
    busyTries += 1;
    if (busyTries >= BUSY_TRIES) {
      sendEnded(false, errorNote(gettext("The server is still too busy to take your message. Nothing was lost: it is still here, send it again in a moment.")));
      return;
    }
    sending = true;
    var button = form.querySelector("[data-testid=send]");
    if (button) button.disabled = true;
    composerError(form, "");
    busyStatus(form, gettext("Busy, retrying…"));
    var seconds = Math.min(BUSY_WAIT_CAP, Math.max(Number(retryAfter) || 1, Math.pow(2, busyTries - 1)));
    // A little spread, so pages refused together do not all come back at the same instant.
    busyTimer = setTimeout(sendAgain, seconds * (1 + Math.random() * 0.25) * 1000);
  }

  function sendAgain() {
    busyTimer = null;
    var form = document.getElementById("composer");
    if (!form) return;
    if (socket) {
      socket.send(sendFrame(form)); // still `sending`: the answer ends it
      return;
    }
    sending = false; // the form posts it (htmx:beforeRequest below)
    form.requestSubmit(form.querySelector("[data-testid=send]"));
  }

  // Once the socket said the session ended, sending would only meet the log-in page.
  var loggedOut = false;

  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (!form || form.id !== "composer") return;
    if (loggedOut) {
      event.preventDefault();
      composerError(form, loggedOutNote());
      return;
    }
    if (busyTimer) {
      event.preventDefault(); // it goes again by itself in a moment
      return;
    }
    var tooLong = overLimit(form);
    if (tooLong) {
      event.preventDefault();
      if (!sending) composerError(form, errorNote(tooLong));
      return;
    }
    if (!socket) return;
    event.preventDefault(); // no HTTP request: the socket carries it
    if (sending) return;
    sending = true;
    var button = form.querySelector("[data-testid=send]");
    if (button) button.disabled = true;
    socket.send(sendFrame(form));
  });

  // A frame the server could not read (or found too large) is answered with an error frame:
  // it shows beside the composer, and a message being sent stays in the box.
  function showError(html) {
    if (sending) {
      sendEnded(false, html);
      return;
    }
    var form = document.getElementById("composer");
    if (form) composerError(form, html);
  }

  document.addEventListener("playground:frame", function (event) {
    if (event.detail.type === "sent") sendEnded(true, "");
    else if (event.detail.type === "refused") sendEnded(false, event.detail.html);
    else if (event.detail.type === "busy") onBusy(event.detail.retry_after);
    else if (event.detail.type === "error") showError(errorNote(String(event.detail.message)));
  });

  function note(text) {
    var el = document.createElement("div");
    el.className = "error composer-error";
    el.setAttribute("data-testid", "error");
    el.setAttribute("role", "alert");
    el.textContent = text;
    return el;
  }

  function errorNote(text) {
    return note(text).outerHTML;
  }

  function loggedOutNote() {
    var el = note(gettext("You were logged out (in another tab, or your session ended), so this page no longer updates. Your text is kept.") + " ");
    el.setAttribute("data-reason", "logged-out");
    var link = document.createElement("a");
    link.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname + location.search);
    link.textContent = gettext("Log in again");
    link.setAttribute("data-testid", "log-in-again");
    el.appendChild(link);
    return el.outerHTML;
  }

  var LOGGED_OUT = 4401; // the server closes a socket whose session ended with this code
  var TOO_BIG = 1009;

  document.addEventListener("htmx:wsClose", function (event) {
    socket = null;
    var code = event.detail.event ? event.detail.event.code : 0;
    if (code === LOGGED_OUT) {
      loggedOut = true;
      showError(loggedOutNote());
      return;
    }
    if (code === TOO_BIG) {
      // The error frame before it said why; the page keeps its live updates.
      event.detail.socketWrapper.reconnect();
      if (sending) sendEnded(false, errorNote(gettext("That message is too large to send.")));
      return;
    }
    if (!sending || busyTimer) return; // waiting to send again: nothing is in flight
    // Whether it arrived is unknown: the page syncs on reconnect and shows it if it did.
    sendEnded(false, errorNote(gettext("The connection dropped while sending. If your message does not appear above, send it again.")));
  });

  // The form post answered busy (503): the composer stays as it is (text, attachments, what
  // was typed since) and the message goes again after the wait.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (!event.detail.elt || event.detail.elt.id !== "composer") return;
    if (event.detail.xhr.status !== 503) return;
    event.detail.shouldSwap = false;
    event.detail.isError = false;
    onBusy(event.detail.xhr.getResponseHeader("Retry-After"));
  });

  // A form post the server failed to take (a 5xx, e.g. every database connection busy) or
  // could not be sent at all says so in place; the text and attachments stay in the composer.
  // (A refusal, 422, comes with its reasons and is swapped in like any answer.)
  document.addEventListener("htmx:responseError", function (event) {
    if (!event.detail.elt || event.detail.elt.id !== "composer") return;
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    sendEnded(false, errorNote(interpolate(gettext("The server could not take your message (error %(status)s). Nothing was lost: send it again in a moment."), { status: status }, true)));
  });
  document.addEventListener("htmx:sendError", function (event) {
    if (!event.detail.elt || event.detail.elt.id !== "composer") return;
    sendEnded(false, errorNote(gettext("The server could not be reached. Nothing was lost: send it again once it is back.")));
  });

  // A new chat's socket is open while the first message is typed; that message creates the
  // conversation over it (chat/new_chat_socket.py), and the page becomes the conversation's
  // without loading another. `created` says which: a socket that reconnects from then on
  // connects to it. The server then sends the parts of the page that name it, after the reply's
  // first text (nothing on the page changes before that text, so nothing holds it back); once
  // they are in, the address goes in the history and the title in the tab. Back and forward to
  // another address load that page.
  var shownPath = location.pathname;
  var NEW_CHAT_SOCKET = /\/ws\/conversations\/new\/$/;
  var becoming = null; // the `created` frame of the conversation this page is becoming

  document.addEventListener("playground:frame", function (event) {
    if (event.detail.type !== "created") return;
    becoming = event.detail;
    var live = document.getElementById("live");
    if (live) live.setAttribute("ws-connect", becoming.socket);
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    if (!becoming || !document.querySelector("#topbar [data-testid=conversation-menu]")) return;
    history.pushState({ conversation: becoming.id }, "", becoming.url);
    shownPath = location.pathname;
    becoming = null;
    followConversationTitle();
  });
  window.addEventListener("popstate", function () {
    if (location.pathname !== shownPath) location.reload();
  });

  // The tab's title follows the conversation's header: a generated title, a rename (here or
  // in another tab) reach the header by a swap, and the tab says the same.
  function followConversationTitle() {
    var heading = document.getElementById("conversation-title");
    if (!heading || becoming || !/^\/c\/\d+\//.test(location.pathname)) return;
    var site = document.title.split(" · ").pop();
    var wanted = heading.textContent.trim() + " · " + site;
    if (heading.textContent.trim() && document.title !== wanted) document.title = wanted;
  }
  document.addEventListener("htmx:wsAfterMessage", followConversationTitle);
  document.addEventListener("htmx:afterSettle", followConversationTitle);
  if (window.htmx && htmx.createWebSocket) {
    var createWebSocket = htmx.createWebSocket;
    htmx.createWebSocket = function (url) {
      var live = document.getElementById("live");
      var path = live && live.getAttribute("ws-connect");
      if (path && !NEW_CHAT_SOCKET.test(path)) url = url.replace(NEW_CHAT_SOCKET, path);
      return createWebSocket(url);
    };
  }

  document.addEventListener("htmx:wsBeforeMessage", function () {
    var el = scroller();
    if (el) stickToBottom = stickToBottom || nearBottom(el);
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    if (stickToBottom) scrollToBottom();
    announceFinishedReplies();
  });

  // The transcript is not a live region: a screen reader would read every token. A reply is
  // announced once, in its own polite region, when it has finished.
  var ANNOUNCED_AS = {
    complete: gettext("Reply: %(text)s"),
    stopped: gettext("Reply stopped: %(text)s"),
    error: gettext("Reply failed: %(text)s"),
    interrupted: gettext("Reply interrupted: %(text)s"),
  };
  var streamingReplies = {};
  function announceFinishedReplies() {
    document
      .querySelectorAll('#transcript [data-role=assistant][data-status="streaming"]')
      .forEach(function (el) { streamingReplies[el.id] = true; });
    Object.keys(streamingReplies).forEach(function (id) {
      var el = document.getElementById(id);
      if (el && el.dataset.status === "streaming") return;
      delete streamingReplies[id];
      var region = document.getElementById("reply-announcer");
      if (!el || !region) return;
      var content = el.querySelector("[data-testid=message-content]");
      var error = el.querySelector("[data-testid=error]");
      var text = (content ? content.textContent : "") + " " + (error ? error.textContent : "");
      region.textContent = interpolate(
        ANNOUNCED_AS[el.dataset.status] || ANNOUNCED_AS.complete,
        { text: text.replace(/\s+/g, " ").trim() },
        true
      );
    });
  }
  document.addEventListener("DOMContentLoaded", announceFinishedReplies);
  document.addEventListener("htmx:afterSwap", function (event) {
    var textarea = document.querySelector("#composer textarea");
    if (textarea && event.target.id === "composer") {
      busyEnded(); // a new composer: the message was taken (or refused with its reasons)
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
    // A message's text comes wrapped in the markup's line breaks and indentation: copy what the
    // person sees. A code sample is copied exactly.
    if (button.closest("[data-testid=message-actions]")) text = text.trim();
    navigator.clipboard.writeText(text).then(function () {
      button.textContent = gettext("Copied");
      setTimeout(function () { button.textContent = gettext("Copy"); }, 1500);
    });
  });

  // Edit a sent message in place: Edit fetches the form into the message (its textarea has
  // autofocus); saving sends it as a new version (a sibling), Cancel puts the form away.
  document.addEventListener("click", function (event) {
    var cancel = event.target.closest("[data-action=cancel-edit]");
    if (cancel) cancel.closest("form").remove();
  });
  // The form opens in view, its buttons too (it may open below the fold, under the composer).
  document.addEventListener("htmx:afterSwap", function (event) {
    var form = event.target.querySelector && event.target.querySelector(".edit-form");
    if (!form) return;
    stickToBottom = false;
    var textarea = form.querySelector("textarea");
    if (textarea) textarea.focus({ preventScroll: true });
    form.scrollIntoView({ block: "nearest", behavior: "smooth" });
  });

  // The simulator banner can be put away (notices.js keeps it away on the next pages); the
  // header's pill still says the simulator answers.
  var BANNER_KEY = "simulator-banner-dismissed";
  document.addEventListener("click", function (event) {
    var dismiss = event.target.closest("[data-action=dismiss-banner]");
    if (!dismiss) return;
    document.documentElement.dataset.bannerDismissed = "";
    try {
      localStorage.setItem(BANNER_KEY, "1");
    } catch (error) {
      // Private windows may refuse storage: the banner stays away for this page only.
    }
  });


  // Import: the entry opens the file picker; the chosen file is named beside its Import button
  // (the native control would sit in the sidebar for good).
  function importRow(form) {
    return form.querySelector(".import-row");
  }
  document.addEventListener("click", function (event) {
    var choose = event.target.closest("[data-action=choose-import]");
    if (choose) {
      var input = document.getElementById("import-archive");
      if (input) input.click();
      return;
    }
    var cancel = event.target.closest("[data-action=cancel-import]");
    if (cancel) {
      var form = cancel.closest("form");
      form.reset();
      importRow(form).hidden = true;
      form.querySelector("#import-result").innerHTML = "";
    }
  });
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("[data-testid=import-form] input[type=file]")) return;
    var form = input.closest("form");
    var file = input.files[0];
    importRow(form).hidden = !file;
    form.querySelector("[data-testid=import-name]").textContent = file ? file.name : "";
    form.querySelector("#import-result").innerHTML = "";
    if (file) form.querySelector("[data-testid=import]").focus();
  });

  // An archive larger than an import takes is refused here, before its bytes are sent (the
  // server would answer 413 as soon as it saw the length).
  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (!form || form.getAttribute("data-testid") !== "import-form") return;
    var input = form.querySelector("input[type=file][data-max-bytes]");
    var file = input && input.files[0];
    var limit = input ? Number(input.dataset.maxBytes) : 0;
    if (!file || !limit || file.size <= limit) return;
    event.preventDefault();
    form.querySelector("#import-result").innerHTML = errorNote(input.dataset.tooBig);
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

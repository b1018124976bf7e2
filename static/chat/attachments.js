// Media attachments in the composer: pick, drop, paste or record; chunked, resumable uploads;
// previews; quick prompts; the lightbox for sent images. No inline script anywhere (CSP).
//
// State lives here, not in the DOM: htmx replaces #composer after every send, so each pending
// attachment owns its chip element and `render()` moves the chips into whatever tray is current.
// A chip carries the hidden <input name=attachments> of a ready upload, so the form submits it.
/* global gettext, ngettext, interpolate */
(function () {
  "use strict";

  var POLL_MS = 500;
  var RETRIES = 5; // per request, on dropped connections and 5xx
  var PARALLEL = 2; // uploads at once; the rest wait their turn
  var MAX_RECORD_SECONDS = 20 * 60;
  var KIND_ORDER = ["video", "audio", "image"];
  var PROMPTS = {
    video: [gettext("Describe this video"), gettext("Summarise what is said")],
    audio: [gettext("Transcribe"), gettext("Who is speaking and about what?")],
    image: [gettext("Describe this image")],
  };
  var LOST = gettext("The connection to the server was lost.");
  var BUSY = { queued: true, uploading: true, processing: true };

  var items = []; // pending attachments, in the order they were added
  var nextId = 1;
  var recording = null; // {recorder, stream, chunks, startedAt, timer, discard} or {starting: true}
  var notice = ""; // an error about the microphone, shown under the tray
  var inFlight = false; // a send request is on its way
  var sendingIds = [];

  function Cancelled() {}

  // ---- Small helpers -------------------------------------------------------------------------

  function composer() {
    return document.getElementById("composer");
  }
  function find(form, selector) {
    return form ? form.querySelector(selector) : null;
  }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }
  // Numbers as the page's language writes them, without grouping (sizes, times, counts).
  var LANG = document.documentElement.lang || "en";
  function number(n, options) {
    var settings = { useGrouping: false };
    Object.keys(options || {}).forEach(function (key) { settings[key] = options[key]; });
    try {
      return new Intl.NumberFormat(LANG, settings).format(n);
    } catch (error) {
      return String(n);
    }
  }
  function pad(n) {
    return number(n, { minimumIntegerDigits: 2 });
  }
  function percentOf(n) {
    return number(n / 100, { style: "percent" });
  }
  function formatBytes(n) {
    if (typeof n !== "number" || !isFinite(n) || n < 0) return "";
    if (n < 1024) return interpolate(ngettext("%(size)s byte", "%(size)s bytes", n), { size: number(n) }, true);
    var units = [gettext("%(size)s KB"), gettext("%(size)s MB"), gettext("%(size)s GB"), gettext("%(size)s TB")];
    var i = -1;
    do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
    // One decimal, as Django's filesizeformat, which captions sent files.
    var size = number(Math.round(n * 10) / 10, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
    return interpolate(units[i], { size: size }, true);
  }
  function formatDuration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds) || seconds < 0) return "";
    var s = Math.round(seconds);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    return (h ? number(h) + ":" + pad(m) : number(m)) + ":" + pad(s % 60);
  }
  function guessKind(type) {
    var major = String(type || "").split("/")[0];
    return PROMPTS[major] ? major : "";
  }
  function csrfToken() {
    try {
      var headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
      if (headers["X-CSRFToken"]) return headers["X-CSRFToken"];
    } catch (e) { /* fall back to the cookie */ }
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }
  function uploadsUrl() {
    var root = find(composer(), "[data-attach]");
    return (root && root.getAttribute("data-uploads-url")) || "/uploads/";
  }
  function mediaUrl(key, which) {
    return "/media/" + encodeURIComponent(key) + "/" + which + "/";
  }
  function sentUrl(item) {
    return (item.info && item.info.sent_url) || mediaUrl(item.key, "sent");
  }

  // ---- HTTP ------------------------------------------------------------------------------------

  async function call(method, url, options) {
    options = options || {};
    var headers = { "X-CSRFToken": csrfToken(), Accept: "application/json" };
    Object.keys(options.headers || {}).forEach(function (name) { headers[name] = options.headers[name]; });
    var response = await fetch(url, {
      method: method,
      headers: headers,
      body: options.body,
      signal: options.signal,
      credentials: "same-origin",
      cache: "no-store",
    });
    var data = {};
    try { data = (await response.json()) || {}; } catch (e) { data = {}; }
    return { status: response.status, data: data };
  }

  // One request for an item, retried with backoff when the connection drops or the server
  // stumbles (5xx, 408, 429). Any other answer is returned as it is.
  async function attempt(item, method, url, options) {
    options = options || {};
    for (var n = 0; ; n++) {
      if (item.removed) throw new Cancelled();
      var result = null;
      try {
        result = await call(method, url, {
          body: options.body, headers: options.headers, signal: item.controller.signal,
        });
        if (result.status < 500 && result.status !== 408 && result.status !== 429) {
          if (item.retrying) { item.retrying = false; update(item); }
          return result;
        }
      } catch (err) {
        if (item.removed || (err && err.name === "AbortError")) throw new Cancelled();
      }
      if (n >= RETRIES) {
        return result || { status: 0, data: { error: LOST } };
      }
      item.retrying = true;
      update(item);
      await sleep(Math.min(8000, 400 * Math.pow(2, n)) + Math.random() * 200);
    }
  }

  function refusal(result, fallback) {
    if (result.data && result.data.error) return String(result.data.error);
    if (result.status === 413) return gettext("The file is too large.");
    if (result.status === 403) return gettext("The server refused the upload (are you still logged in?).");
    if (result.status === 0) return LOST;
    return interpolate(fallback, { status: result.status }, true);
  }

  // ---- The upload of one item ----------------------------------------------------------------

  var running = 0;

  function pump() {
    items.forEach(function (item) {
      if (item.status === "queued" && running < PARALLEL) {
        running++;
        item.status = "uploading";
        update(item);
        run(item).finally(function () { running--; pump(); });
      }
    });
  }

  async function run(item) {
    try {
      await create(item);
      // The server may answer "uploading" again after we thought we were done (a lost chunk):
      // then send the rest and ask again, a few times at most.
      for (var round = 0; round < 5; round++) {
        if (round) await sleep(POLL_MS);
        await sendChunks(item);
        if (await poll(item)) return;
      }
      fail(item, gettext("The upload could not be completed."));
    } catch (err) {
      if (err instanceof Cancelled || item.removed) return;
      fail(item, (err && err.message) || gettext("The upload failed."));
    }
  }

  async function create(item) {
    var form = new FormData();
    form.append("name", item.name);
    form.append("size", String(item.size));
    form.append("type", item.type);
    var result = await attempt(item, "POST", uploadsUrl(), { body: form });
    if (result.status !== 201 && result.status !== 200) {
      throw new Error(refusal(result, gettext("The upload was refused (HTTP %(status)s).")));
    }
    item.key = result.data.key;
    item.url = result.data.upload_url || uploadsUrl() + item.key + "/";
    item.chunkSize = Math.max(1, Number(result.data.chunk_size) || 8 * 1024 * 1024);
    item.received = Number(result.data.received) || 0;
    item.serverStatus = result.data.status || "uploading";
    update(item);
  }

  async function sendChunks(item) {
    var stalls = 0;
    while (item.serverStatus === "uploading" && item.received < item.size) {
      var offset = item.received;
      var end = Math.min(offset + item.chunkSize, item.size);
      var result = await attempt(item, "PUT", item.url, {
        body: item.file.slice(offset, end),
        headers: { "Upload-Offset": String(offset), "Content-Type": "application/octet-stream" },
      });
      var received = Number(result.data.received);
      if (result.status === 200) {
        item.received = isFinite(received) ? received : end;
        item.serverStatus = result.data.status || "uploading";
        stalls = 0;
      } else if (result.status === 409 && isFinite(received)) {
        // The server has a different idea of how far we got: carry on from there.
        if (received === offset && ++stalls > 3) throw new Error(gettext("The upload stalled."));
        item.received = received;
        // "processing" here: the last chunk did arrive, only its answer was lost.
        if (result.data.status) item.serverStatus = result.data.status;
      } else {
        throw new Error(refusal(result, gettext("The upload was refused (HTTP %(status)s).")));
      }
      update(item);
    }
  }

  // Ask the server until the file is ready or refused. True when settled, false to resume.
  async function poll(item) {
    for (;;) {
      var result = await attempt(item, "GET", item.url);
      if (result.status !== 200) {
        throw new Error(refusal(result, gettext("The upload's status is unknown (HTTP %(status)s).")));
      }
      var info = result.data;
      item.info = info;
      if (info.kind) item.kind = info.kind;
      if (typeof info.received === "number") item.received = info.received;
      item.serverStatus = info.status;
      if (info.status === "ready") {
        item.status = "ready";
        update(item);
        announce(interpolate(gettext("%(name)s is ready to send."), { name: item.name }, true));
        return true;
      }
      if (info.status === "failed") {
        fail(item, info.error || gettext("The file could not be used."));
        return true;
      }
      if (info.status === "uploading") return false;
      if (item.status !== "processing") {
        announce(interpolate(gettext("Converting %(name)s…"), { name: item.name }, true));
      }
      item.status = "processing";
      item.progress = Math.max(0, Math.min(1, Number(info.progress) || 0));
      update(item);
      await sleep(POLL_MS);
    }
  }

  function fail(item, message) {
    if (item.removed) return;
    item.status = "failed";
    item.error = message;
    update(item);
    announce(interpolate(gettext("%(name)s: %(error)s"), { name: item.name, error: message }, true));
  }

  function remove(item) {
    var index = items.indexOf(item);
    if (index === -1) return;
    item.removed = true;
    item.controller.abort();
    items.splice(index, 1);
    if (item.key) {
      // keepalive: the request outlives a page that is being left.
      fetch(item.url || uploadsUrl() + item.key + "/", {
        method: "DELETE", headers: { "X-CSRFToken": csrfToken() }, credentials: "same-origin", keepalive: true,
      }).catch(function () { /* the server forgets unsent uploads by itself */ });
    }
    forget(item);
    announce(interpolate(gettext("%(name)s removed."), { name: item.name }, true));
    var next = items[index] || items[index - 1];
    var target = next ? next.el.querySelector(".chip-remove") : find(composer(), "textarea");
    render();
    pump();
    if (target) target.focus();
  }

  function forget(item) {
    if (item.localUrl) URL.revokeObjectURL(item.localUrl);
    item.localUrl = null;
    item.el.remove();
  }

  function addFiles(list) {
    var files = Array.prototype.slice.call(list || []);
    if (!files.length || !composer()) return;
    notice = "";
    files.forEach(function (file) {
      var item = {
        id: nextId++,
        file: file,
        name: file.name || "file",
        size: file.size,
        type: file.type || "",
        kind: guessKind(file.type),
        status: "queued",
        received: 0,
        progress: 0,
        error: "",
        key: null,
        info: null,
        controller: new AbortController(),
        removed: false,
      };
      if (item.kind === "image" && window.URL && URL.createObjectURL) item.localUrl = URL.createObjectURL(file);
      item.el = buildChip(item);
      items.push(item);
      update(item);
    });
    announce(
      files.length === 1
        ? interpolate(gettext("Attaching %(name)s."), { name: files[0].name }, true)
        : interpolate(
          ngettext("Attaching %(count)s file.", "Attaching %(count)s files.", files.length),
          { count: number(files.length) },
          true
        )
    );
    render();
    pump();
  }

  // ---- Chips -----------------------------------------------------------------------------------

  function buildChip(item) {
    var chip = el("div", "chip");
    chip.setAttribute("role", "listitem");
    chip.setAttribute("data-testid", "pending-attachment");
    chip.dataset.id = String(item.id);
    var thumb = el("div", "chip-thumb");
    var body = el("div", "chip-body");
    var name = el("div", "chip-name", item.name);
    name.title = item.name;
    var meta = el("div", "chip-meta");
    var bar = el("progress", "chip-progress");
    bar.max = 100;
    bar.setAttribute("aria-label", interpolate(gettext("Progress of %(name)s"), { name: item.name }, true));
    var status = el("div", "chip-status");
    var error = el("div", "error chip-error");
    error.setAttribute("data-testid", "error");
    error.setAttribute("role", "alert");
    error.hidden = true;
    var player = el("div", "chip-player");
    player.hidden = true;
    body.append(name, meta, bar, status, error, player);
    var removeButton = el("button", "chip-remove");
    removeButton.type = "button";
    removeButton.setAttribute("data-action", "remove-attachment");
    removeButton.setAttribute("aria-label", interpolate(gettext("Remove %(name)s"), { name: item.name }, true));
    removeButton.title = gettext("Remove");
    removeButton.textContent = "×";
    var input = el("input");
    input.type = "hidden";
    input.name = "attachments";
    input.disabled = true; // enabled once the upload is ready
    chip.append(thumb, body, removeButton, input);
    item.parts = { thumb: thumb, meta: meta, bar: bar, status: status, error: error, player: player, input: input };
    return chip;
  }

  function update(item) {
    var p = item.parts;
    if (!p) return;
    var info = item.info || {};
    item.el.dataset.status = item.status;
    item.el.dataset.kind = item.kind || "file";

    var facts = [formatBytes(info.size || item.size)];
    if (info.duration) facts.push(formatDuration(info.duration));
    if (info.width && info.height) facts.push(number(info.width) + "×" + number(info.height));
    p.meta.textContent = facts.filter(Boolean).join(" · ");

    var text = "";
    var percent = null;
    if (item.status === "queued") {
      text = gettext("Waiting…");
      percent = 0;
    } else if (item.status === "uploading") {
      percent = item.size ? Math.floor((100 * item.received) / item.size) : 0;
      text = interpolate(
        item.retrying ? gettext("Connection lost, retrying… %(percent)s") : gettext("Uploading… %(percent)s"),
        { percent: percentOf(percent) },
        true
      );
    } else if (item.status === "processing") {
      if (item.progress > 0) {
        percent = Math.floor(100 * item.progress);
        text = interpolate(gettext("Converting… %(percent)s"), { percent: percentOf(percent) }, true);
      } else {
        text = gettext("Processing…");
      }
    }
    p.status.textContent = text;
    p.status.hidden = !text;
    p.bar.hidden = !BUSY[item.status];
    if (percent === null) p.bar.removeAttribute("value");
    else p.bar.value = percent;
    if (text) p.bar.setAttribute("aria-valuetext", text);

    p.error.hidden = item.status !== "failed";
    p.error.textContent = item.status === "failed" ? item.error : "";

    p.input.disabled = item.status !== "ready";
    p.input.value = item.status === "ready" ? item.key : "";

    renderThumb(item);
    renderPlayer(item);
    if (!updating) {
      updating = true;
      // Coalesce: one tray refresh per frame, however many chunks land.
      requestAnimationFrame(function () { updating = false; render(); });
    }
  }
  var updating = false;

  function renderThumb(item) {
    var info = item.info || {};
    var ready = item.status === "ready";
    var poster = info.poster_url || (ready && item.kind === "image" && item.key ? sentUrl(item) : "");
    var state = [item.status === "failed" ? "failed" : item.kind, poster, item.localUrl, info.duration].join("|");
    if (item.thumbState === state) return;
    item.thumbState = state;
    var thumb = item.parts.thumb;
    thumb.textContent = "";
    var src = item.kind === "image" ? item.localUrl || poster : item.kind === "video" ? poster : "";
    if (item.status === "failed") {
      thumb.appendChild(el("span", "chip-icon chip-icon-failed", "!"));
      thumb.firstChild.setAttribute("aria-hidden", "true");
      return;
    }
    if (!src) {
      var icon = el("span", "chip-icon chip-icon-" + (item.kind || "file"));
      icon.setAttribute("aria-hidden", "true");
      thumb.appendChild(icon);
      return;
    }
    var open = el("button", "chip-open");
    open.type = "button";
    open.setAttribute("aria-label", interpolate(gettext("Preview %(name)s"), { name: item.name }, true));
    open.setAttribute("data-action", "preview-attachment");
    var img = el("img");
    img.alt = "";
    img.src = src;
    img.addEventListener("error", function () {
      // A format the browser cannot show (HEIC, TIFF): an icon instead; the server converts it.
      if (item.localUrl && img.src === item.localUrl) {
        URL.revokeObjectURL(item.localUrl);
        item.localUrl = null;
        renderThumb(item);
      }
    });
    open.appendChild(img);
    if (item.kind === "video") {
      open.appendChild(el("span", "chip-play")).setAttribute("aria-hidden", "true");
      if (info.duration) open.appendChild(el("span", "chip-duration", formatDuration(info.duration)));
    }
    thumb.appendChild(open);
  }

  function renderPlayer(item) {
    var p = item.parts;
    var show = item.status === "ready" && item.kind === "audio" && item.key;
    if (show && !p.player.firstChild) {
      var audio = el("audio");
      audio.controls = true;
      audio.preload = "metadata";
      audio.src = sentUrl(item);
      audio.setAttribute("aria-label", interpolate(gettext("Play %(name)s"), { name: item.name }, true));
      p.player.appendChild(audio);
    }
    p.player.hidden = !show;
  }

  function preview(item) {
    var ready = item.status === "ready" && item.key;
    if (item.kind === "video" && ready) {
      openLightbox({ kind: "video", src: sentUrl(item), name: item.name });
    } else if (item.kind === "image") {
      var src = ready ? sentUrl(item) : item.localUrl;
      if (src) openLightbox({ kind: "image", src: src, name: item.name });
    }
  }

  // ---- The tray as a whole -------------------------------------------------------------------

  function busyItems() {
    return items.filter(function (item) { return BUSY[item.status]; });
  }

  function render() {
    var form = composer();
    if (!form) return;
    var tray = find(form, "[data-testid=pending]");
    if (tray) {
      items.forEach(function (item, i) {
        if (tray.children[i] !== item.el) tray.insertBefore(item.el, tray.children[i] || null);
      });
      while (tray.children.length > items.length) tray.lastElementChild.remove();
      tray.hidden = items.length === 0;
    }
    renderPrompts(form);
    renderRecorder(form);
    renderHint(form);
    renderSend(form);
  }

  function renderPrompts(form) {
    var box = find(form, "[data-attach-prompts]");
    var textarea = find(form, "textarea[name=text]");
    if (!box) return;
    var kinds = KIND_ORDER.filter(function (kind) {
      return items.some(function (item) { return item.kind === kind && item.status !== "failed"; });
    });
    var show = kinds.length > 0 && textarea && textarea.value.trim() === "";
    box.hidden = !show;
    var key = kinds.join(",");
    if (box.dataset.kinds === key) return; // keep the buttons (and focus) when nothing changed
    box.dataset.kinds = key;
    box.textContent = "";
    kinds.forEach(function (kind) {
      PROMPTS[kind].forEach(function (prompt) {
        var button = el("button", "quick-prompt", prompt);
        button.type = "button";
        button.setAttribute("data-action", "quick-prompt");
        box.appendChild(button);
      });
    });
  }

  function renderRecorder(form) {
    var box = find(form, "[data-attach-recorder]");
    var button = find(form, "[data-action=record]");
    var active = !!(recording && recording.recorder);
    if (box) {
      box.hidden = !active;
      var time = find(box, "[data-attach-time]");
      if (time && active) {
        var seconds = Math.floor((Date.now() - recording.startedAt) / 1000);
        time.textContent = pad(Math.floor(seconds / 60)) + ":" + pad(seconds % 60);
      }
    }
    if (button) {
      button.setAttribute("aria-pressed", active ? "true" : "false");
      button.setAttribute("aria-label", active ? gettext("Stop recording and attach") : gettext("Record audio"));
      button.classList.toggle("recording", active);
      button.disabled = !!(recording && recording.starting);
    }
  }

  function renderHint(form) {
    var hint = find(form, "[data-attach-hint]");
    if (!hint) return;
    var busy = busyItems().length;
    var failed = items.filter(function (item) { return item.status === "failed"; }).length;
    hint.textContent = "";
    hint.classList.remove("error");
    hint.removeAttribute("data-testid");
    hint.removeAttribute("role");
    var text = "";
    if (notice) {
      hint.classList.add("error");
      hint.setAttribute("data-testid", "error");
      hint.setAttribute("role", "alert");
      text = notice;
    } else if (recording && recording.recorder) {
      text = gettext("Stop the recording to attach it; Send waits until then.");
    } else if (busy) {
      text = busy === 1
        ? gettext("Send is available when the attachment is ready.")
        : interpolate(
          ngettext(
            "Send is available when %(count)s attachment is ready.",
            "Send is available when all %(count)s attachments are ready.",
            busy
          ),
          { count: number(busy) },
          true
        );
    } else if (failed) {
      text = failed === 1
        ? gettext("One file could not be attached and will not be sent.")
        : interpolate(
          ngettext(
            "%(count)s file could not be attached and will not be sent.",
            "%(count)s files could not be attached and will not be sent.",
            failed
          ),
          { count: number(failed) },
          true
        );
    }
    hint.textContent = text;
    hint.hidden = !text;
  }

  function blocked() {
    return busyItems().length > 0 || !!recording;
  }

  function renderSend(form) {
    var send = find(form, "[data-testid=send]");
    if (!send || inFlight) return;
    var block = blocked();
    send.disabled = block;
    if (block) send.setAttribute("aria-describedby", "composer-attach-hint");
    else send.removeAttribute("aria-describedby");
  }

  function announce(text) {
    var live = find(composer(), "[data-attach-live]");
    if (!live) return;
    live.textContent = "";
    // A fresh text node, a tick later, so screen readers announce repeats too.
    setTimeout(function () { live.textContent = text; }, 30);
  }

  // ---- Microphone ------------------------------------------------------------------------------

  function recorderType() {
    if (typeof MediaRecorder === "undefined" || !MediaRecorder.isTypeSupported) return "";
    var types = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];
    for (var i = 0; i < types.length; i++) if (MediaRecorder.isTypeSupported(types[i])) return types[i];
    return "";
  }

  function microphoneProblem(err) {
    var name = (err && err.name) || "";
    if (name === "NotAllowedError" || name === "PermissionDeniedError" || name === "SecurityError") {
      return gettext("Microphone access was denied. Allow the microphone for this site in the browser's settings, then try again.");
    }
    if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
      return gettext("No microphone was found. Connect one and try again.");
    }
    if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
      return gettext("The microphone could not be started; another app may be using it.");
    }
    return interpolate(
      gettext("Recording failed: %(error)s."),
      { error: (err && err.message) || name || gettext("unknown error") },
      true
    );
  }

  async function startRecording() {
    if (recording) return;
    notice = "";
    if (!window.isSecureContext) {
      notice = gettext("Recording needs a secure page: open the playground over HTTPS (or on localhost).");
    } else if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || typeof MediaRecorder === "undefined") {
      notice = gettext("This browser cannot record audio. Attach an audio file instead.");
    }
    if (notice) { render(); return; }
    recording = { starting: true };
    render();
    var stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      recording = null;
      notice = microphoneProblem(err);
      render();
      return;
    }
    var type = recorderType();
    var recorder;
    try {
      recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    } catch (err) {
      stream.getTracks().forEach(function (track) { track.stop(); });
      recording = null;
      notice = microphoneProblem(err);
      render();
      return;
    }
    var rec = { recorder: recorder, stream: stream, chunks: [], startedAt: Date.now(), discard: false };
    recorder.addEventListener("dataavailable", function (event) {
      if (event.data && event.data.size) rec.chunks.push(event.data);
    });
    recorder.addEventListener("stop", function () { finishRecording(rec); });
    recorder.addEventListener("error", function (event) {
      notice = microphoneProblem(event.error);
      stopRecording(true);
    });
    // A microphone unplugged mid-recording ends the track: keep what was recorded.
    stream.getTracks().forEach(function (track) {
      track.addEventListener("ended", function () { stopRecording(false); });
    });
    rec.timer = setInterval(function () {
      if ((Date.now() - rec.startedAt) / 1000 >= MAX_RECORD_SECONDS) stopRecording(false);
      renderRecorder(composer());
    }, 250);
    recorder.start(1000);
    recording = rec;
    render();
    announce(gettext("Recording started."));
    var stop = find(composer(), "[data-action=stop-recording]");
    if (stop) stop.focus();
  }

  function stopRecording(discard) {
    var rec = recording;
    if (!rec || !rec.recorder) return;
    rec.discard = rec.discard || discard;
    if (rec.recorder.state !== "inactive") rec.recorder.stop();
    else finishRecording(rec);
  }

  function recordingName(type) {
    var stamp = new Date().toISOString().slice(0, 19).replace(/:/g, "-");
    var ext = /ogg/.test(type) ? ".ogg" : /mp4|aac/.test(type) ? ".m4a" : ".webm";
    return "recording-" + stamp + ext;
  }

  function finishRecording(rec) {
    if (rec.finished) return;
    rec.finished = true;
    clearInterval(rec.timer);
    rec.stream.getTracks().forEach(function (track) { track.stop(); });
    if (recording === rec) recording = null;
    if (!rec.discard && rec.chunks.length) {
      var type = rec.recorder.mimeType || rec.chunks[0].type || "audio/webm";
      var blob = new Blob(rec.chunks, { type: type });
      addFiles([new File([blob], recordingName(type), { type: type.split(";")[0] })]);
    } else {
      announce(rec.discard ? gettext("Recording discarded.") : gettext("Nothing was recorded."));
    }
    render();
    var textarea = find(composer(), "textarea[name=text]");
    if (textarea) textarea.focus();
  }

  // ---- Lightbox --------------------------------------------------------------------------------

  function lightbox() {
    var dialog = document.getElementById("attachment-lightbox");
    if (dialog) return dialog;
    dialog = el("dialog", "lightbox");
    dialog.id = "attachment-lightbox";
    dialog.setAttribute("aria-label", gettext("Attachment"));
    var close = el("button", "lightbox-close", "×");
    close.type = "button";
    close.setAttribute("data-action", "close-lightbox");
    close.setAttribute("aria-label", gettext("Close"));
    var stage = el("div", "lightbox-stage");
    var caption = el("div", "lightbox-caption small");
    dialog.append(close, stage, caption);
    dialog.addEventListener("click", function (event) {
      // A click on the backdrop (the dialog box itself, outside its content) closes it.
      if (event.target === dialog || event.target === stage) dialog.close();
    });
    dialog.addEventListener("close", function () { stage.textContent = ""; });
    document.body.appendChild(dialog);
    return dialog;
  }

  function openLightbox(what) {
    var dialog = lightbox();
    var stage = dialog.querySelector(".lightbox-stage");
    var caption = dialog.querySelector(".lightbox-caption");
    stage.textContent = "";
    caption.textContent = "";
    var media;
    if (what.kind === "video") {
      media = el("video");
      media.controls = true;
      media.autoplay = true;
      media.playsInline = true;
    } else {
      media = el("img");
      media.alt = what.name || "";
    }
    media.src = what.src;
    stage.appendChild(media);
    caption.appendChild(el("span", "lightbox-name", what.name || ""));
    if (what.download) {
      var link = el("a", "", gettext("Download"));
      link.href = what.download;
      link.setAttribute("download", what.name || "");
      caption.appendChild(link);
    }
    dialog.setAttribute("aria-label", what.name || gettext("Attachment"));
    if (dialog.showModal) dialog.showModal();
    else dialog.setAttribute("open", "");
    dialog.querySelector(".lightbox-close").focus();
  }

  // ---- Events ----------------------------------------------------------------------------------

  function itemOf(node) {
    var chip = node && node.closest(".chip");
    if (!chip) return null;
    var id = Number(chip.dataset.id);
    return items.filter(function (item) { return item.id === id; })[0] || null;
  }

  document.addEventListener("click", function (event) {
    var action = event.target.closest && event.target.closest("[data-action]");
    if (!action) return;
    var name = action.getAttribute("data-action");
    var form = composer();
    if (name === "attach") {
      var input = find(form, "input[type=file][name=files]");
      if (input) input.click();
    } else if (name === "record") {
      if (recording && recording.recorder) stopRecording(false);
      else startRecording();
    } else if (name === "stop-recording") {
      stopRecording(false);
    } else if (name === "discard-recording") {
      stopRecording(true);
    } else if (name === "remove-attachment") {
      var item = itemOf(action);
      if (item) remove(item);
    } else if (name === "preview-attachment") {
      var shown = itemOf(action);
      if (shown) preview(shown);
    } else if (name === "quick-prompt") {
      var textarea = find(form, "textarea[name=text]");
      if (!textarea) return;
      textarea.value = action.textContent;
      // Let chat.js resize the box, and hide the prompts (the text is no longer empty).
      textarea.dispatchEvent(new Event("input", { bubbles: true }));
      textarea.focus();
      textarea.setSelectionRange(textarea.value.length, textarea.value.length);
    } else if (name === "open-lightbox") {
      openLightbox({
        kind: action.getAttribute("data-kind") || "image",
        src: action.getAttribute("data-src"),
        name: action.getAttribute("data-name"),
        download: action.getAttribute("data-download"),
      });
    } else if (name === "close-lightbox") {
      var dialog = action.closest("dialog");
      if (dialog) dialog.close();
    }
  });

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("#composer input[type=file][name=files]")) return;
    addFiles(input.files);
    // The files travel by the upload API, never with the message form.
    input.value = "";
    var textarea = find(composer(), "textarea[name=text]");
    if (textarea) textarea.focus();
  });

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("#composer textarea[name=text]")) renderPrompts(composer());
  });

  // Enter with attachments but no text sends them (chat.js only sends non-empty text).
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (!target.matches || !target.matches("#composer textarea[name=text]")) return;
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    if (target.value.trim() !== "") return;
    if (document.querySelector('#transcript [data-status="streaming"]')) return;
    var ready = items.some(function (item) { return item.status === "ready"; });
    if (!ready) return;
    event.preventDefault();
    target.form.requestSubmit(target.form.querySelector("[data-testid=send]"));
  });

  // Nothing is sent while an attachment is still on its way: the message would go without it.
  document.addEventListener(
    "submit",
    function (event) {
      var form = event.target;
      if (!form || form.id !== "composer") return;
      var submitter = event.submitter;
      if (submitter && submitter.matches("[data-testid=stop]")) return;
      if (!blocked()) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      render();
      var hint = find(form, "[data-attach-hint]");
      if (hint) {
        hint.classList.remove("nudge");
        void hint.offsetWidth; // restart the animation
        hint.classList.add("nudge");
      }
    },
    true
  );

  function isSend(event) {
    var elt = event.detail && event.detail.elt;
    return elt && elt.id === "composer";
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    if (!isSend(event)) return;
    inFlight = true;
    sendingIds = items.filter(function (item) { return item.status === "ready" || item.status === "failed"; })
      .map(function (item) { return item.id; });
  });

  // A send ends: as a form post (htmx:afterRequest), or over the page's socket (chat.js).
  document.addEventListener("htmx:afterRequest", function (event) {
    if (!isSend(event)) return;
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    sendEnded(status >= 200 && status < 300);
  });
  document.addEventListener("composer:done", function (event) {
    sendEnded(event.detail.sent);
  });

  function sendEnded(sent) {
    inFlight = false;
    if (sent) {
      // Sent: the attachments now belong to the message. Failed chips go too; files added
      // while the request was on its way stay.
      items = items.filter(function (item) {
        if (sendingIds.indexOf(item.id) === -1) return true;
        forget(item);
        return false;
      });
    }
    sendingIds = [];
    render();
  }

  // The composer was replaced (a refused send re-renders it with the text kept): put the chips,
  // prompts and recorder back into the new form.
  ["htmx:afterSwap", "htmx:afterSettle", "htmx:load"].forEach(function (name) {
    document.addEventListener(name, function () {
      render();
      formatDurations();
    });
  });
  document.addEventListener("htmx:wsAfterMessage", formatDurations);

  // ---- Drag and drop, paste --------------------------------------------------------------------

  var dragDepth = 0;
  function carriesFiles(event) {
    var types = event.dataTransfer && event.dataTransfer.types;
    return !!types && Array.prototype.indexOf.call(types, "Files") !== -1;
  }
  function overlay(show) {
    var node = document.getElementById("attachment-drop");
    if (!node && show) {
      node = el("div", "drop-overlay");
      node.id = "attachment-drop";
      node.setAttribute("data-testid", "drop-overlay");
      var box = el("div", "drop-box");
      box.appendChild(el("strong", "", gettext("Drop files to attach")));
      box.appendChild(el("span", "small", gettext("Images, audio and video")));
      node.appendChild(box);
      document.body.appendChild(node);
    }
    if (node) node.hidden = !show;
  }
  document.addEventListener("dragenter", function (event) {
    if (!composer() || !carriesFiles(event)) return;
    event.preventDefault();
    dragDepth++;
    overlay(true);
  });
  document.addEventListener("dragover", function (event) {
    if (!composer() || !carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("dragleave", function (event) {
    if (!composer() || !carriesFiles(event)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0 || event.relatedTarget === null) {
      dragDepth = 0;
      overlay(false);
    }
  });
  document.addEventListener("drop", function (event) {
    if (!composer() || !carriesFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    overlay(false);
    addFiles(event.dataTransfer.files);
  });
  window.addEventListener("blur", function () { dragDepth = 0; overlay(false); });

  document.addEventListener("paste", function (event) {
    if (!composer() || !event.clipboardData) return;
    var data = event.clipboardData;
    var files = Array.prototype.slice.call(data.files || []);
    if (!files.length && data.items) {
      Array.prototype.forEach.call(data.items, function (entry) {
        if (entry.kind === "file") {
          var file = entry.getAsFile();
          if (file) files.push(file);
        }
      });
    }
    if (!files.length) return;
    // Office apps put a picture of copied text next to the text itself: keep the text then.
    var text = data.getData("text/plain");
    var allImages = files.every(function (file) { return /^image\//.test(file.type); });
    if (text && text.trim() && allImages) return;
    event.preventDefault();
    addFiles(files.map(function (file, i) {
      if (file.name && file.name !== "image.png") return file;
      var ext = (file.type.split("/")[1] || "bin").replace("jpeg", "jpg");
      var stamp = new Date().toISOString().slice(0, 19).replace(/:/g, "-");
      return new File([file], "pasted-" + stamp + (i ? "-" + i : "") + "." + ext, { type: file.type });
    }));
  });

  // Leaving while an upload runs loses it: ask first.
  window.addEventListener("beforeunload", function (event) {
    if (busyItems().length || (recording && recording.recorder)) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  // Sent attachments: durations as m:ss.
  function formatDurations() {
    Array.prototype.forEach.call(document.querySelectorAll(".attachment [data-seconds]"), function (node) {
      if (node.dataset.formatted) return;
      var seconds = parseFloat(node.getAttribute("data-seconds"));
      if (isFinite(seconds)) node.textContent = formatDuration(seconds);
      node.dataset.formatted = "1";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    render();
    formatDurations();
  });
})();

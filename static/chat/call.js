// A voice call with the model: the microphone stays open, speech detection in the browser
// (Silero VAD through @ricky0123/vad-web, vendored in static/vendor) finds each utterance, and
// each goes to the server whole (chat/calls.py) as 16 kHz WAV, or with the camera on as a short
// video with its sound. The reply streams back over the page's socket like any other; speech.js
// plays it as it comes and the panel shows it as captions. Speaking over it stops it (barge-in).
//
// What it measures goes in window.playgroundCall.log (bench/call.py reads it): entries with a
// `type` and `at`, ms since the epoch.
/* global gettext, interpolate */
(function () {
  "use strict";

  var RATE = 16000; // what the VAD hands over, and what is sent
  var PAUSE_KEY = "call-pause-ms";
  var DEFAULT_PAUSE_MS = 700;
  var MAX_UTTERANCE_SECONDS = 120;
  var STATES = {
    starting: gettext("Starting the call…"),
    listening: gettext("Listening…"),
    hearing: gettext("Hearing you…"),
    sending: gettext("Sending…"),
    thinking: gettext("Thinking…"),
    speaking: gettext("Speaking — talk to interrupt"),
    ended: gettext("The call ended."),
  };
  var THINKING_OFF = gettext(
    "Thinking is off for the call's replies: the model speaks only with thinking off. Typed messages keep your settings."
  );

  var log = [];
  window.playgroundCall = { log: log };
  var call = null; // the call under way
  var vadLoading = null;

  function now() {
    return performance.timeOrigin + performance.now();
  }
  function note(type, extra) {
    var entry = { type: type, at: now() };
    Object.keys(extra || {}).forEach(function (key) { entry[key] = extra[key]; });
    log.push(entry);
    return entry;
  }
  function panel() {
    return document.getElementById("call-panel");
  }
  function part(name) {
    var el = panel();
    return el ? el.querySelector("[data-call-" + name + "]") : null;
  }
  function csrfToken() {
    try {
      var headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
      if (headers["X-CSRFToken"]) return headers["X-CSRFToken"];
    } catch (error) { /* the cookie then */ }
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // ---- What the panel shows -------------------------------------------------------------------

  function setState(state) {
    if (!call) return;
    call.state = state;
    var el = panel();
    el.dataset.callState = state;
    var label = part("label");
    label.textContent = call.muted && state === "listening" ? gettext("Muted") : STATES[state];
  }

  function showError(text) {
    var el = part("error");
    if (!el) return;
    el.textContent = text || "";
    el.hidden = !text;
    if (text) note("error", { text: text });
  }

  function showNote(text) {
    var el = part("note");
    el.textContent = text || "";
    el.hidden = !text;
  }

  function caption() {
    if (!call || !call.reply) return;
    var content = document.getElementById("message-" + call.reply + "-content");
    var el = part("caption");
    if (!content || !el) return;
    var text = content.textContent.replace(/\s+/g, " ").trim();
    el.textContent = text.length > 400 ? "…" + text.slice(-400) : text;
  }

  function meter() {
    if (!call || !call.analyser) return;
    var data = call.levels;
    call.analyser.getFloatTimeDomainData(data);
    var sum = 0;
    for (var i = 0; i < data.length; i++) sum += data[i] * data[i];
    var level = call.muted ? 0 : Math.min(1, Math.sqrt(sum / data.length) * 4);
    part("level").style.transform = "scaleX(" + level.toFixed(3) + ")";
    call.meterFrame = requestAnimationFrame(meter);
  }

  function microphoneProblem(error) {
    var name = error && error.name;
    if (name === "NotAllowedError" || name === "SecurityError") {
      return gettext("The browser was not allowed to use the microphone. Allow it for this site (the icon in the address bar), then press Call again.");
    }
    if (name === "NotFoundError" || name === "OverconstrainedError") {
      return gettext("No microphone was found. Connect one, then press Call again.");
    }
    if (name === "NotReadableError" || name === "AbortError") {
      return gettext("The microphone could not be started: another program may be using it. Close it, then press Call again.");
    }
    return interpolate(
      gettext("The microphone could not be opened (%(error)s)."),
      { error: (error && error.message) || name || gettext("unknown error") },
      true
    );
  }

  // ---- Starting and ending ----------------------------------------------------------------------

  function loadVad() {
    if (window.vad && window.vad.MicVAD) return Promise.resolve(window.vad);
    if (vadLoading) return vadLoading;
    vadLoading = new Promise(function (resolve, reject) {
      var script = document.createElement("script");
      script.src = panel().dataset.vadScript;
      script.onload = function () {
        if (window.vad && window.vad.MicVAD) resolve(window.vad);
        else reject(new Error(gettext("the speech detector did not load")));
      };
      script.onerror = function () { reject(new Error(gettext("the speech detector's script did not load"))); };
      document.head.appendChild(script);
    });
    vadLoading.catch(function () { vadLoading = null; });
    return vadLoading;
  }

  function pauseMs() {
    var value = DEFAULT_PAUSE_MS;
    try {
      value = Number(localStorage.getItem(PAUSE_KEY)) || DEFAULT_PAUSE_MS;
    } catch (error) { /* private windows may refuse storage */ }
    return value;
  }

  function thinkingOn() {
    var box = document.querySelector("#settings-panel input[name=enable_thinking]");
    return !!(box && box.checked);
  }

  async function start(button) {
    if (call) return;
    var el = panel();
    if (!el) return;
    call = {
      turnUrl: button.dataset.turnUrl,
      stopUrl: button.dataset.stopUrl,
      button: button,
      state: "starting",
      muted: false,
      reply: null,
      speaking: false, // the VAD is inside an utterance
      ignoreEnd: false, // the VAD's utterance under way is not to be sent
      ptt: null, // {frames} while Space is held
      recorder: null,
      camera: null,
      stopped: {},
    };
    document.body.classList.add("in-call");
    el.hidden = false;
    showError("");
    showNote(thinkingOn() ? THINKING_OFF : "");
    part("caption").textContent = "";
    part("pause").value = String(pauseMs());
    setState("starting");
    button.setAttribute("aria-pressed", "true");
    var session = call;
    try {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw new Error(gettext("This browser cannot open a microphone here: calls need a secure connection (https, or localhost)."));
      }
      var stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({
          audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        });
      } catch (error) {
        throw new Error(microphoneProblem(error));
      }
      session.stream = stream;
      if (session !== call) return stopTracks(stream);
      stream.getAudioTracks().forEach(function (track) {
        track.addEventListener("ended", function () {
          if (session === call) failed(gettext("The microphone stopped (unplugged, or taken by another program). Press Call to start again."));
        });
      });
      var vad;
      try {
        vad = await loadVad();
      } catch (error) {
        throw new Error(interpolate(
          gettext("Speech detection could not start (%(error)s). Reload the page and try again."),
          { error: error.message },
          true
        ));
      }
      if (session !== call) return stopTracks(stream);
      var ctx = new AudioContext();
      session.ctx = ctx;
      session.analyser = ctx.createAnalyser();
      session.analyser.fftSize = 1024;
      session.levels = new Float32Array(session.analyser.fftSize);
      ctx.createMediaStreamSource(stream).connect(session.analyser);
      session.vad = await vad.MicVAD.new({
        model: "v5",
        baseAssetPath: el.dataset.vadAssets,
        onnxWASMBasePath: el.dataset.vadAssets,
        audioContext: ctx,
        getStream: function () { return Promise.resolve(stream); },
        pauseStream: function () { return Promise.resolve(); },
        resumeStream: function () { return Promise.resolve(stream); },
        ortConfig: function (ort) {
          ort.env.logLevel = "error";
          ort.env.wasm.numThreads = 1;
          ort.env.wasm.wasmPaths = { mjs: el.dataset.ortMjs, wasm: el.dataset.ortWasm };
        },
        redemptionMs: pauseMs(),
        preSpeechPadMs: 300,
        minSpeechMs: 250,
        positiveSpeechThreshold: 0.5,
        negativeSpeechThreshold: 0.35,
        onSpeechStart: function () { if (session === call) speechStarted(); },
        onVADMisfire: function () { if (session === call) speechMisfired(); },
        onSpeechEnd: function (audio) { if (session === call) speechEnded(audio); },
        onFrameProcessed: function (probabilities, frame) {
          if (session === call && call.ptt) call.ptt.frames.push(new Float32Array(frame));
        },
      });
      if (session !== call) {
        session.vad.destroy();
        return stopTracks(stream);
      }
      setState("listening");
      meter();
      note("ready");
    } catch (error) {
      if (session === call) failed(error.message || String(error));
    }
  }

  function stopTracks(stream) {
    if (stream) stream.getTracks().forEach(function (track) { track.stop(); });
  }

  // The call cannot go on: say why in the panel, and let go of the microphone.
  function failed(text) {
    release();
    showError(text);
    var label = part("label");
    if (label) label.textContent = gettext("The call could not go on.");
  }

  function release() {
    var session = call;
    if (!session) return;
    call = null;
    panel().dataset.callState = "ended";
    if (session.meterFrame) cancelAnimationFrame(session.meterFrame);
    if (session.recorder && session.recorder.state !== "inactive") {
      session.recorder.discard = true;
      session.recorder.stop();
    }
    if (session.vad) session.vad.destroy().catch(function () {});
    stopTracks(session.stream);
    stopTracks(session.camera);
    if (session.ctx) session.ctx.close().catch(function () {});
    document.dispatchEvent(new CustomEvent("playground:speech-stop", { detail: {} }));
    session.button.setAttribute("aria-pressed", "false");
    window.playgroundCall.lastTracks = (session.stream ? session.stream.getTracks() : []).concat(
      session.camera ? session.camera.getTracks() : []
    );
  }

  function end() {
    if (!call) {
      hidePanel();
      return;
    }
    var button = call.button;
    release();
    note("ended");
    hidePanel();
    if (button && document.body.contains(button)) button.focus();
  }

  function hidePanel() {
    var el = panel();
    if (el) el.hidden = true;
    document.body.classList.remove("in-call");
    var label = part("label");
    if (label) label.textContent = STATES.ended;
  }

  // ---- Turns ------------------------------------------------------------------------------------

  function replyActive() {
    return call.state === "sending" || call.state === "thinking" || call.state === "speaking";
  }

  function speechStarted() {
    call.speaking = true;
    if (call.muted || call.ptt) {
      call.ignoreEnd = true;
      return;
    }
    call.ignoreEnd = false;
    note("speech-start");
    if (replyActive()) bargeIn();
    setState("hearing");
    startRecording();
  }

  function speechMisfired() {
    call.speaking = false;
    if (call.ignoreEnd) {
      call.ignoreEnd = false;
      return;
    }
    discardRecording();
    if (call.state === "hearing") setState("listening");
  }

  function speechEnded(audio) {
    call.speaking = false;
    if (call.ignoreEnd || call.muted || call.ptt) {
      call.ignoreEnd = false;
      return;
    }
    note("speech-end", { seconds: audio.length / RATE });
    send(audio);
  }

  // Barge-in: the person speaks while the reply is on its way or playing. Playback stops now,
  // and the reply is stopped on the server (saved `stopped`, with what it had said).
  function bargeIn() {
    var at = now();
    var stop = { message: call.reply };
    document.dispatchEvent(new CustomEvent("playground:speech-stop", { detail: stop }));
    note("barge-in", { at: at, silent: stop.silent || now(), message: call.reply });
    call.bargedAt = at;
    stopReply();
  }

  function stopReply() {
    if (call.reply) call.stopped[call.reply] = true;
    fetch(call.stopUrl, {
      method: "POST",
      headers: { "X-CSRFToken": csrfToken(), "HX-Request": "true" },
      credentials: "same-origin",
    }).catch(function () { /* the reply then runs to its end; nothing is lost */ });
  }

  async function send(samples) {
    var session = call;
    setState("sending");
    var body;
    var type;
    if (session.recorder) {
      body = await finishRecording();
      type = "video/webm";
    }
    if (!body || session !== call) {
      if (session !== call) return;
      body = new Blob([window.playgroundWav.encodeWav(samples, RATE)], { type: "audio/wav" });
      type = "audio/wav";
    }
    if (body.size === 0) {
      setState("listening");
      return;
    }
    var sentAt = now();
    var response;
    var data = {};
    try {
      response = await fetch(session.turnUrl, {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken(), "Content-Type": type },
        body: body,
        credentials: "same-origin",
      });
      try { data = (await response.json()) || {}; } catch (error) { data = {}; }
    } catch (error) {
      if (session === call) {
        showError(gettext("The server could not be reached, so that was not sent. Say it again once it is back."));
        setState("listening");
      }
      return;
    }
    if (session !== call) return;
    if (response.status !== 201) {
      var why = data.error || interpolate(
        gettext("The server could not take that (error %(status)s)."), { status: response.status }, true
      );
      if (response.status === 503) why = gettext("The server is busy, so that was not sent. Say it again in a moment.");
      showError(why);
      if (call.state === "sending") setState("listening");
      return;
    }
    showError("");
    note("sent", { message: data.message, reply: data.reply });
    call.reply = data.reply;
    // Spoken over while it was being sent: it is stopped as soon as it is known.
    if (call.bargedAt && call.bargedAt > sentAt) {
      call.stopped[call.reply] = true;
      document.dispatchEvent(new CustomEvent("playground:speech-stop", { detail: { message: call.reply } }));
      stopReply();
      return;
    }
    if (call.state === "sending") setState("thinking");
    followReply();
  }

  // The reply's state, after each frame: captions, and the end of the turn.
  function followReply() {
    if (!call || !call.reply) return;
    caption();
    var article = document.getElementById("message-" + call.reply);
    if (!article) return;
    var status = article.dataset.status;
    if (status === "streaming") return;
    var id = call.reply;
    if (status === "stopped" && !call.stopped["seen-" + id]) {
      call.stopped["seen-" + id] = true;
      note("reply-stopped", { message: id });
    }
    if (status === "error" || status === "interrupted") {
      var error = article.querySelector("[data-testid=error]");
      var text = error ? error.textContent.replace(/\s+/g, " ").trim() : "";
      showError(
        text
          ? interpolate(gettext("The model could not answer: %(error)s Say it again, or end the call."), { error: text }, true)
          : gettext("The model could not answer. Say it again, or end the call.")
      );
    }
    if (call.state === "thinking" || (call.state === "speaking" && !call.playing)) {
      setState("listening");
    }
  }

  document.addEventListener("playground:speech-start", function (event) {
    if (!call || event.detail.message !== call.reply || call.stopped[call.reply]) return;
    note("audio-first", { at: event.detail.at, audible: event.detail.audible, message: event.detail.message });
    call.playing = true;
    if (call.state === "thinking" || call.state === "sending") setState("speaking");
  });
  document.addEventListener("playground:speech-idle", function (event) {
    if (!call || event.detail.message !== call.reply) return;
    call.playing = false;
    var article = document.getElementById("message-" + call.reply);
    var done = !article || article.dataset.status !== "streaming";
    if (call.state !== "speaking") return;
    if (done) {
      note("speaking-end", { message: call.reply });
      setState("listening");
    } else {
      setState("thinking"); // more is coming
    }
  });
  document.addEventListener("playground:streamed", function () { if (call) caption(); });
  document.addEventListener("htmx:wsAfterMessage", followReply);

  // ---- The camera ---------------------------------------------------------------------------------

  async function cameraOn() {
    var button = panel().querySelector("[data-action=call-camera]");
    try {
      call.camera = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 15 } },
      });
    } catch (error) {
      button.setAttribute("aria-pressed", "false");
      var name = error && error.name;
      showError(
        name === "NotAllowedError"
          ? gettext("The browser was not allowed to use the camera. Allow it for this site, or go on without it.")
          : interpolate(
            gettext("The camera could not be opened (%(error)s). The call goes on with sound only."),
            { error: (error && error.message) || name },
            true
          )
      );
      return;
    }
    button.setAttribute("aria-pressed", "true");
    var preview = part("preview");
    preview.srcObject = call.camera;
    preview.hidden = false;
  }

  function cameraOff() {
    stopTracks(call.camera);
    call.camera = null;
    panel().querySelector("[data-action=call-camera]").setAttribute("aria-pressed", "false");
    var preview = part("preview");
    preview.srcObject = null;
    preview.hidden = true;
  }

  function recorderType() {
    var types = ["video/webm;codecs=vp8,opus", "video/webm;codecs=vp9,opus", "video/webm"];
    for (var i = 0; i < types.length; i++) if (MediaRecorder.isTypeSupported(types[i])) return types[i];
    return "";
  }

  // With the camera on, each utterance is also recorded as a video with its sound, from the
  // moment speech is detected to the moment it ends.
  function startRecording() {
    if (!call.camera || typeof MediaRecorder === "undefined") return;
    var tracks = call.camera.getVideoTracks().concat(call.stream.getAudioTracks());
    try {
      var type = recorderType();
      var options = { videoBitsPerSecond: 800000, audioBitsPerSecond: 48000 };
      if (type) options.mimeType = type;
      var recorder = new MediaRecorder(new MediaStream(tracks), options);
      recorder.chunks = [];
      recorder.addEventListener("dataavailable", function (event) {
        if (event.data && event.data.size) recorder.chunks.push(event.data);
      });
      recorder.start();
      call.recorder = recorder;
    } catch (error) {
      call.recorder = null;
    }
  }

  function discardRecording() {
    var recorder = call.recorder;
    call.recorder = null;
    if (recorder && recorder.state !== "inactive") {
      recorder.discard = true;
      recorder.stop();
    }
  }

  function finishRecording() {
    var recorder = call.recorder;
    call.recorder = null;
    return new Promise(function (resolve) {
      if (!recorder || recorder.state === "inactive") return resolve(null);
      recorder.addEventListener("stop", function () {
        resolve(new Blob(recorder.chunks, { type: "video/webm" }));
      });
      recorder.stop();
    });
  }

  // ---- Push to talk (hold Space) and mute -------------------------------------------------------

  function typing(target) {
    return target && target.closest && target.closest("input, textarea, select, [contenteditable]");
  }

  document.addEventListener("keydown", function (event) {
    if (!call || event.key !== " " || typing(event.target) || call.state === "starting") return;
    event.preventDefault(); // not a click on the focused button
    if (event.repeat || call.ptt || call.muted) return;
    call.ptt = { frames: [] };
    if (call.speaking) call.ignoreEnd = true; // what the VAD has begun is part of this turn
    note("speech-start", { ptt: true });
    if (replyActive()) bargeIn();
    setState("hearing");
    startRecording();
  });
  document.addEventListener("keyup", function (event) {
    if (!call || event.key !== " " || !call.ptt) return;
    event.preventDefault();
    var frames = call.ptt.frames;
    call.ptt = null;
    if (call.speaking) call.ignoreEnd = true;
    var count = 0;
    frames.forEach(function (frame) { count += frame.length; });
    if (count < RATE * 0.2) {
      discardRecording(); // a tap, not a turn
      setState("listening");
      return;
    }
    var samples = new Float32Array(count);
    var offset = 0;
    frames.forEach(function (frame) { samples.set(frame, offset); offset += frame.length; });
    note("speech-end", { seconds: count / RATE, ptt: true });
    send(samples);
  });

  function setMuted(muted) {
    call.muted = muted;
    if (call.stream) call.stream.getAudioTracks().forEach(function (track) { track.enabled = !muted; });
    if (muted && call.speaking) call.ignoreEnd = true;
    if (muted) discardRecording();
    var button = panel().querySelector("[data-action=call-mute]");
    button.setAttribute("aria-pressed", muted ? "true" : "false");
    button.textContent = muted ? gettext("Unmute") : gettext("Mute");
    if (call.state === "hearing" && muted) setState("listening");
    else setState(call.state);
  }

  // ---- Wiring -------------------------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-action]");
    if (!target) return;
    var action = target.dataset.action;
    if (action === "start-call") {
      event.preventDefault();
      if (call) end();
      else start(target);
    } else if (action === "call-end") {
      end();
    } else if (action === "call-mute" && call) {
      setMuted(!call.muted);
    } else if (action === "call-camera" && call) {
      if (call.camera) cameraOff();
      else cameraOn();
    }
  });

  document.addEventListener("change", function (event) {
    if (!event.target.matches || !event.target.matches("[data-call-pause]")) return;
    var value = Number(event.target.value) || DEFAULT_PAUSE_MS;
    try {
      localStorage.setItem(PAUSE_KEY, String(value));
    } catch (error) { /* kept for this call only */ }
    if (call && call.vad) call.vad.setOptions({ redemptionMs: value });
  });

  // Escape ends the call (and stops a reply first, as in the chat).
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && call && !document.querySelector("[data-status=streaming]")) end();
  });

  // Leaving the page ends the call; what was said is saved already.
  window.addEventListener("pagehide", function () { if (call) release(); });

  // Long utterances: past the limit the turn ends by itself.
  setInterval(function () {
    if (!call || !call.ptt) return;
    var count = 0;
    call.ptt.frames.forEach(function (frame) { count += frame.length; });
    if (count / RATE > MAX_UTTERANCE_SECONDS) {
      document.dispatchEvent(new KeyboardEvent("keyup", { key: " " }));
    }
  }, 1000);
})();

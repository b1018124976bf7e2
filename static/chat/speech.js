// Spoken answers: PCM frames (24 kHz, s16le, mono) arrive as JSON over the page's WebSocket and
// are scheduled back to back on one AudioContext, so speech plays while it streams, gaplessly.
//
// For a call (call.js) it also says when a reply's speech starts (`playground:speech-start`,
// with when its first sample is audible) and when all that was scheduled has played
// (`playground:speech-idle`), and it stops at once on `playground:speech-stop` (a barge-in):
// the rest of that reply's audio is then dropped.
(function () {
  "use strict";

  var RATE = 24000;
  // How far ahead of "now" a reply's first chunk is scheduled: enough for the audio thread to
  // take it, little enough to be heard at once. Later chunks queue behind the ones playing.
  var LEAD_SECONDS = 0.01;
  var context = null;
  var nextStart = 0;
  var playing = []; // {source, message}
  var started = {}; // message id -> true once its first chunk was scheduled
  var silenced = {}; // message id -> true: interrupted, its further audio is dropped

  function now() {
    return performance.timeOrigin + performance.now();
  }

  function audioContext() {
    if (!context) {
      var Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return null;
      context = new Context({ sampleRate: RATE });
    }
    return context;
  }

  // Browsers only start audio after a gesture: the click or key press that sends a message.
  function unlock() {
    var ctx = audioContext();
    if (ctx && ctx.state === "suspended") ctx.resume();
  }
  document.addEventListener("click", unlock, true);
  document.addEventListener("keydown", unlock, true);

  function decode(base64) {
    var binary = atob(base64);
    var count = binary.length >> 1;
    var samples = new Float32Array(count);
    for (var i = 0; i < count; i++) {
      var value = binary.charCodeAt(2 * i) | (binary.charCodeAt(2 * i + 1) << 8);
      if (value >= 0x8000) value -= 0x10000;
      samples[i] = value / 32768;
    }
    return samples;
  }

  // Seconds between a sample leaving the context and reaching the speakers.
  function outputLatency(ctx) {
    return ctx.outputLatency || ctx.baseLatency || 0;
  }

  function emit(name, detail) {
    document.dispatchEvent(new CustomEvent(name, { detail: detail }));
  }

  function play(messageId, samples, receivedAt) {
    var ctx = audioContext();
    if (!ctx || samples.length === 0 || silenced[messageId]) return;
    var buffer = ctx.createBuffer(1, samples.length, RATE);
    buffer.copyToChannel(samples, 0);
    var source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    nextStart = Math.max(nextStart, ctx.currentTime + LEAD_SECONDS);
    source.start(nextStart);
    var entry = { source: source, message: messageId };
    playing.push(entry);
    source.addEventListener("ended", function () {
      var index = playing.indexOf(entry);
      if (index === -1) return; // stopped
      playing.splice(index, 1);
      if (!playing.some(function (other) { return other.message === messageId; })) {
        emit("playground:speech-idle", { message: messageId });
      }
    });
    if (!started[messageId]) {
      started[messageId] = true;
      var audible = now() + (nextStart - ctx.currentTime + outputLatency(ctx)) * 1000;
      emit("playground:speech-start", { message: messageId, at: receivedAt, audible: audible });
    }
    nextStart += buffer.duration;

    // What was played, for anyone checking that speech came out (and for tests).
    var body = document.body.dataset;
    var peak = Number(body.speechPeak || 0);
    for (var i = 0; i < samples.length; i++) peak = Math.max(peak, Math.abs(samples[i]));
    body.speechPeak = peak.toFixed(3);
    body.speechSeconds = (Number(body.speechSeconds || 0) + buffer.duration).toFixed(2);
    body.speechMessage = messageId;
  }

  // Stop speaking now: every scheduled chunk, and what is still to come of `message` (all
  // replies when none is named). The listener writes when the speakers fell silent into the
  // event's detail (`silent`, ms since the epoch).
  document.addEventListener("playground:speech-stop", function (event) {
    var detail = event.detail || {};
    var stopped = playing;
    playing = [];
    stopped.forEach(function (entry) {
      silenced[entry.message] = true;
      try {
        entry.source.stop();
      } catch (error) {
        // Already ended.
      }
    });
    if (detail.message) silenced[detail.message] = true;
    var ctx = context;
    nextStart = 0;
    detail.silent = now() + (ctx ? outputLatency(ctx) * 1000 : 0);
  });

  document.addEventListener("playground:frame", function (event) {
    var frame = event.detail;
    if (frame.type === "audio") play(frame.message, decode(frame.pcm), now());
  });
})();

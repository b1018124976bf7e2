// Spoken answers: PCM frames (24 kHz, s16le, mono) arrive as JSON over the page's WebSocket and
// are scheduled back to back on one AudioContext, so speech plays while it streams, gaplessly.
(function () {
  "use strict";

  var RATE = 24000;
  var context = null;
  var nextStart = 0;

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

  function play(messageId, samples) {
    var ctx = audioContext();
    if (!ctx || samples.length === 0) return;
    var buffer = ctx.createBuffer(1, samples.length, RATE);
    buffer.copyToChannel(samples, 0);
    var source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    // Keep a small lead so network jitter does not open gaps between chunks.
    nextStart = Math.max(nextStart, ctx.currentTime + 0.05);
    source.start(nextStart);
    nextStart += buffer.duration;

    // What was played, for anyone checking that speech came out (and for tests).
    var body = document.body.dataset;
    var peak = Number(body.speechPeak || 0);
    for (var i = 0; i < samples.length; i++) peak = Math.max(peak, Math.abs(samples[i]));
    body.speechPeak = peak.toFixed(3);
    body.speechSeconds = (Number(body.speechSeconds || 0) + buffer.duration).toFixed(2);
    body.speechMessage = messageId;
  }

  document.addEventListener("playground:frame", function (event) {
    var frame = event.detail;
    if (frame.type === "audio") play(frame.message, decode(frame.pcm));
  });
})();

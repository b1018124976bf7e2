// WAV encoding of captured speech: float samples in [-1, 1] -> a 16-bit PCM mono RIFF file,
// the form the model takes as `input_audio` without any conversion. Pure; used by call.js, and
// by tests under Node (module.exports).
(function (root) {
  "use strict";

  function writeAscii(view, offset, text) {
    for (var i = 0; i < text.length; i++) view.setUint8(offset + i, text.charCodeAt(i));
  }

  // `samples`: a Float32Array (or a list of them, joined in order) at `rate` Hz.
  function encodeWav(samples, rate) {
    var parts = Array.isArray(samples) ? samples : [samples];
    var count = 0;
    parts.forEach(function (part) { count += part.length; });
    var buffer = new ArrayBuffer(44 + count * 2);
    var view = new DataView(buffer);
    writeAscii(view, 0, "RIFF");
    view.setUint32(4, 36 + count * 2, true);
    writeAscii(view, 8, "WAVE");
    writeAscii(view, 12, "fmt ");
    view.setUint32(16, 16, true); // the format chunk's size
    view.setUint16(20, 1, true); // PCM
    view.setUint16(22, 1, true); // mono
    view.setUint32(24, rate, true);
    view.setUint32(28, rate * 2, true); // bytes per second
    view.setUint16(32, 2, true); // bytes per frame
    view.setUint16(34, 16, true); // bits per sample
    writeAscii(view, 36, "data");
    view.setUint32(40, count * 2, true);
    var offset = 44;
    parts.forEach(function (part) {
      for (var i = 0; i < part.length; i++, offset += 2) {
        var value = Math.max(-1, Math.min(1, part[i] || 0));
        view.setInt16(offset, value < 0 ? Math.round(value * 32768) : Math.round(value * 32767), true);
      }
    });
    return buffer;
  }

  var api = { encodeWav: encodeWav };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.playgroundWav = api;
})(this);

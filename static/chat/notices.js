// Notices the person put away stay away, from the first paint (this script is loaded without
// defer): <html data-banner-dismissed> hides the simulator banner. chat.js sets it on dismissal.
(function () {
  "use strict";
  try {
    if (localStorage.getItem("simulator-banner-dismissed") === "1") {
      document.documentElement.dataset.bannerDismissed = "";
    }
  } catch (error) {
    // Storage refused (a private window): the banner shows.
  }
})();

// Asks before destructive actions: a form or a submit button with data-confirm="question".
// An external file rather than inline handlers, so the Content-Security-Policy can forbid
// every inline script.
(function () {
  "use strict";
  document.addEventListener(
    "submit",
    function (event) {
      var submitter = event.submitter;
      var question =
        (submitter && submitter.getAttribute("data-confirm")) ||
        event.target.getAttribute("data-confirm");
      if (question && !window.confirm(question)) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    },
    true
  );
})();

/* The agent change form: ask before leaving the page with edits that were not saved (a link, Back, closing the
   tab). Pressing Save or a lifecycle button submits the form, so it never asks then. */
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("agentinstance_form");
  if (!form) {
    return;
  }
  let dirty = false;
  form.addEventListener("input", () => { dirty = true; });
  form.addEventListener("change", () => { dirty = true; });
  form.addEventListener("submit", () => { dirty = false; });
  window.addEventListener("beforeunload", (event) => {
    if (dirty) {
      event.preventDefault();
      event.returnValue = "";  // older browsers show their dialog only with a return value
    }
  });
});

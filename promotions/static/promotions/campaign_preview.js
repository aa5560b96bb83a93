// The campaign page's SMS preview follows the template as the marketer types.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const template = document.getElementById("id_offer_template");
  const validDays = document.getElementById("id_offer_valid_days");
  const preview = document.getElementById("sms-preview");
  if (!template || !preview) {
    return;
  }
  let timer = null;
  function refresh() {
    const query = new URLSearchParams({
      template: template.value,
      valid_days: validDays ? validDays.value : "7",
    });
    fetch(preview.dataset.url + "?" + query.toString(), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (data) { preview.innerHTML = data.html; })
      .catch(function () { /* keep the last preview */ });
  }
  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }
  template.addEventListener("input", later);
  if (validDays) {
    validDays.addEventListener("input", later);
  }
});

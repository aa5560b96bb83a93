// The campaign page's SMS preview follows the template as the marketer types.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const template = document.getElementById("id_offer_template");
  const validDays = document.getElementById("id_offer_valid_days");
  const skus = document.getElementById("id_intent_skus");
  const categories = document.getElementById("id_intent_categories");
  const preview = document.getElementById("sms-preview");
  if (!template || !preview) {
    return;
  }
  // The stores chosen: the right-hand box of Django's two-box selector, or the plain
  // select where its script has not run.
  function chosenStores() {
    const chosen = document.getElementById("id_stores_to");
    if (chosen) {
      return Array.from(chosen.options).map(function (option) { return option.value; });
    }
    const plain = document.getElementById("id_stores");
    return plain ? Array.from(plain.selectedOptions).map(function (option) { return option.value; }) : [];
  }
  let timer = null;
  function refresh() {
    const query = new URLSearchParams({
      template: template.value,
      valid_days: validDays ? validDays.value : "7",
      skus: skus ? skus.value : "",
      categories: categories ? categories.value : "",
    });
    chosenStores().forEach(function (store) { query.append("store", store); });
    fetch(preview.dataset.url + "?" + query.toString(), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (data) { preview.innerHTML = data.html; })
      .catch(function () { /* keep the last preview */ });
  }
  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  }
  [template, validDays, skus, categories].forEach(function (field) {
    if (field) {
      field.addEventListener("input", later);
    }
  });
  // Moving stores between the boxes fires no input event on them.
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest(".selector")) {
      later();
    }
  });
});

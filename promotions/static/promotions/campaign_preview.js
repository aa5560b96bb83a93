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
  // The page's CSRF token: the preview is posted, as a campaign in hundreds of stores makes
  // a query string longer than servers take (gunicorn refuses a request line over 4 KB).
  const csrf = document.querySelector("input[name=csrfmiddlewaretoken]");
  // A preview that could not be had is said so, never left showing the previous one: its
  // segment count would be stale.
  function unavailable(reason) {
    const note = document.createElement("p");
    note.className = "errornote";
    note.textContent = "Preview unavailable" + (reason ? ": " + reason : "");
    preview.replaceChildren(note);
  }
  let timer = null;
  let asked = 0;  // the last preview asked for: an earlier one answering late is dropped
  function refresh() {
    const mine = ++asked;
    const form = new URLSearchParams({
      template: template.value,
      valid_days: validDays ? validDays.value : "7",
      skus: skus ? skus.value : "",
      categories: categories ? categories.value : "",
    });
    chosenStores().forEach(function (store) { form.append("store", store); });
    fetch(preview.dataset.url, {
      method: "POST",
      body: form,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf ? csrf.value : "" },
    })
      .then(function (response) {
        if (mine !== asked) {
          return;
        }
        if (response.ok) {
          return response.json().then(function (data) { preview.innerHTML = data.html; });
        }
        // The server's reason when it gave one in JSON, else its status.
        return response.json()
          .catch(function () { return {}; })
          .then(function (data) {
            unavailable(data.error || (response.status + " " + response.statusText).trim());
          });
      })
      .catch(function (error) {
        if (mine === asked) {
          unavailable(error.message);
        }
      });
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

// The store page's map: the fence drawn as its circle or polygon, a pin to move the store's
// point, and the address geocoded on request. Without tiles (offline) the fence still draws.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const box = document.getElementById("store-map");
  if (!box) {
    return;
  }
  const field = function (name) { return document.getElementById("id_" + name); };
  const latitude = field("latitude");
  const longitude = field("longitude");
  const radius = field("radius_m");
  const polygon = field("polygon");
  const status = document.getElementById("store-map-status");
  if (typeof L === "undefined") {
    status.textContent = "The map could not load; the coordinates above still work.";
    return;
  }
  const point = function () {
    const lat = parseFloat(latitude.value), lon = parseFloat(longitude.value);
    return isFinite(lat) && isFinite(lon) ? [lat, lon] : [48.8566, 2.3522];
  };
  const map = L.map(box).setView(point(), 17);
  if (box.dataset.tiles) {
    L.tileLayer(box.dataset.tiles, { maxZoom: 19, attribution: "© OpenStreetMap" })
      .on("tileerror", function () {
        status.textContent = "Map tiles are not reachable; the fence is drawn without them.";
      })
      .addTo(map);
  }
  const pin = L.marker(point(), { draggable: true }).addTo(map);
  let fence = null;
  function drawFence() {
    if (fence) { map.removeLayer(fence); fence = null; }
    const shape = polygon && polygon.value.trim();
    if (shape && shape !== "null") {
      try {
        const rings = JSON.parse(shape).coordinates.map(function (ring) {
          return ring.map(function (p) { return [p[1], p[0]]; });
        });
        fence = L.polygon(rings, { color: "#417690" }).addTo(map);
        return;
      } catch (error) {
        status.textContent = "The polygon is not valid GeoJSON yet.";
      }
    }
    const metres = parseFloat(radius && radius.value);
    if (isFinite(metres) && metres > 0) {
      fence = L.circle(point(), { radius: metres, color: "#417690" }).addTo(map);
    }
  }
  pin.on("dragend", function () {
    const at = pin.getLatLng();
    latitude.value = at.lat.toFixed(6);
    longitude.value = at.lng.toFixed(6);
    drawFence();
  });
  [latitude, longitude, radius, polygon].forEach(function (input) {
    if (input) {
      input.addEventListener("input", function () {
        pin.setLatLng(point());
        drawFence();
      });
    }
  });
  drawFence();
  const geocode = document.getElementById("store-geocode");
  if (geocode) {
    geocode.addEventListener("click", function (event) {
      event.preventDefault();
      const address = field("address").value;
      fetch(box.dataset.geocodeUrl + "?" + new URLSearchParams({ address: address }),
            { credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (data) {
          if (data.error) {
            status.textContent = data.error;
            return;
          }
          latitude.value = data.latitude.toFixed(6);
          longitude.value = data.longitude.toFixed(6);
          pin.setLatLng(point());
          map.setView(point(), 17);
          drawFence();
          status.textContent = "Found: move the pin to the door if needed.";
        });
    });
  }
});

// The store page's map: the fence drawn as its circle or polygon, a pin to move the store's
// point, an outline drawn corner by corner, and the address geocoded on request. Without
// tiles (offline) the fence still draws. A read-only page (an account that may view stores,
// not change them) has no inputs: the fence is drawn from the store as saved, which the
// map's box carries, and the pin stays put.
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
  const editable = Boolean(latitude && longitude);
  // An input's value as typed, or the saved value the box carries where there is no input.
  const value = function (input, saved) { return input ? input.value : (saved || ""); };
  if (typeof L === "undefined") {
    status.textContent = "The map could not load; the coordinates above still work.";
    return;
  }
  const point = function () {
    const lat = parseFloat(value(latitude, box.dataset.latitude));
    const lon = parseFloat(value(longitude, box.dataset.longitude));
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
  const pin = L.marker(point(), { draggable: editable }).addTo(map);
  let fence = null;
  function drawFence() {
    if (fence) { map.removeLayer(fence); fence = null; }
    const shape = value(polygon, box.dataset.polygon).trim();
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
    const metres = parseFloat(value(radius, box.dataset.radius));
    if (isFinite(metres) && metres > 0) {
      fence = L.circle(point(), { radius: metres, color: "#417690" }).addTo(map);
    }
  }
  if (editable) {
    pin.on("dragend", function () {
      const at = pin.getLatLng();
      latitude.value = at.lat.toFixed(6);
      longitude.value = at.lng.toFixed(6);
      drawFence();
    });
  }
  [latitude, longitude, radius, polygon].forEach(function (input) {
    if (input) {
      input.addEventListener("input", function () {
        pin.setLatLng(point());
        // Typed coordinates bring the map along (the page may have resized its box since).
        map.invalidateSize();
        map.panTo(point());
        drawFence();
      });
    }
  });
  drawFence();

  // An outline: each click on the map adds a corner; finishing writes the polygon into its
  // field as GeoJSON ([longitude, latitude], the ring closed), which the server validates
  // on save. A store has a polygon or a radius, so each choice empties the other field.
  const draw = document.getElementById("store-draw");
  let corners = null;
  let sketch = null;
  function showSketch() {
    if (sketch) { map.removeLayer(sketch); sketch = null; }
    if (corners && corners.length) {
      sketch = L.polyline(corners, { color: "#ba2121", dashArray: "4 4" }).addTo(map);
    }
  }
  map.on("click", function (event) {
    if (!corners) {
      return;
    }
    corners.push([event.latlng.lat, event.latlng.lng]);
    showSketch();
    status.textContent = corners.length + " corner(s): click the next one, or Finish.";
  });
  if (draw && polygon) {
    draw.addEventListener("click", function (event) {
      event.preventDefault();
      if (!corners) {
        corners = [];
        draw.textContent = "Finish the outline";
        status.textContent = "Click the map at each corner of the store.";
        return;
      }
      if (corners.length < 3) {
        status.textContent = "An outline needs at least three corners.";
        return;
      }
      const ring = corners.concat([corners[0]]).map(function (corner) {
        return [Number(corner[1].toFixed(7)), Number(corner[0].toFixed(7))];
      });
      polygon.value = JSON.stringify({ type: "Polygon", coordinates: [ring] });
      if (radius) { radius.value = ""; }
      corners = null;
      showSketch();
      draw.textContent = "Draw the outline";
      drawFence();
      status.textContent = "Outline drawn: save the store to keep it.";
    });
  }
  const circle = document.getElementById("store-circle");
  if (circle && polygon && radius) {
    circle.addEventListener("click", function (event) {
      event.preventDefault();
      polygon.value = "";
      if (!(parseFloat(radius.value) > 0)) { radius.value = "50"; }
      drawFence();
      status.textContent = "A circle of the radius above: save the store to keep it.";
    });
  }

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
        })
        .catch(function () {
          // Not JSON: the session expired (a login page came back), or the server is down.
          status.textContent =
            "The address could not be looked up: reload the page (you may need to log in " +
            "again) or type the coordinates.";
        });
    });
  }
});

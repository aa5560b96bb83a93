// The store page's map: the fence drawn as its circle or polygon, a pin to move the store's
// point, an outline drawn corner by corner, and the address geocoded on request. Without
// tiles (offline) the fence still draws. A read-only page (an account that may view stores,
// not change them) has no inputs: the fence is drawn from the store as saved, which the
// map's box carries, and the pin stays put. Near the antimeridian the map shows the store's
// side of it and writes longitudes as the server keeps them, in [-180, 180).
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

  // A longitude brought into [-180, 180), as the server keeps it: a map centred near the
  // antimeridian gives clicks and drags past 180, which the server refuses as off the globe.
  const onTheGlobe = function (lon) { return ((lon + 180) % 360 + 360) % 360 - 180; };
  // A longitude of the outline drawn within 180 degrees of the pin: Leaflet draws an edge
  // from 179.999 to -179.999 the long way round the world, where the server (and the engine)
  // takes the short way across the antimeridian. The pin, not the longitude typed: one
  // dragged across it stays on the side shown, where the field says -179.9995.
  const nearStore = function (lon) {
    const at = pin.getLatLng().lng;
    return at + onTheGlobe(lon - at);
  };

  // The rings of an outline as the server takes it (promotions.geo.outline_geometry): the
  // Polygon itself, or wrapped as map editors export it, in a Feature, a FeatureCollection of
  // one, a MultiPolygon of one (QGIS). Throws an Error saying why for anything else.
  const ONE_OUTLINE = "One outline per store: paste a single Polygon.";
  const NOT_YET = "The polygon is not valid GeoJSON yet.";
  function outlineRings(geojson) {
    const is = function (value, kind) {
      return value !== null && typeof value === "object" && value.type === kind;
    };
    if (is(geojson, "FeatureCollection")) {
      if (!Array.isArray(geojson.features) || geojson.features.length !== 1) {
        throw new Error(ONE_OUTLINE);
      }
      geojson = geojson.features[0];
    }
    if (is(geojson, "Feature")) { geojson = geojson.geometry; }
    let rings = null;
    if (is(geojson, "MultiPolygon")) {
      if (!Array.isArray(geojson.coordinates) || geojson.coordinates.length !== 1) {
        throw new Error(ONE_OUTLINE);
      }
      rings = geojson.coordinates[0];
    } else if (is(geojson, "Polygon")) {
      rings = geojson.coordinates;
    }
    const position = function (p) {
      return Array.isArray(p) && p.length >= 2 && Number.isFinite(p[0]) && Number.isFinite(p[1]);
    };
    const valid = Array.isArray(rings) && rings.length > 0 && rings.every(function (ring) {
      return Array.isArray(ring) && ring.length >= 4 && ring.every(position);
    });
    if (!valid) { throw new Error(NOT_YET); }
    return rings.map(function (ring) {
      return ring.map(function (p) { return [p[1], nearStore(p[0])]; });
    });
  }

  let fence = null;
  let complaint = "";  // what drawFence last said of the outline, to take back once it draws
  function drawFence() {
    if (fence) { map.removeLayer(fence); fence = null; }
    const shape = value(polygon, box.dataset.polygon).trim();
    let problem = "";
    if (shape && shape !== "null") {
      try {
        fence = L.polygon(outlineRings(JSON.parse(shape)), { color: "#417690" }).addTo(map);
      } catch (error) {
        problem = error.message === ONE_OUTLINE ? ONE_OUTLINE : NOT_YET;
      }
    }
    if (problem) {
      status.textContent = problem;
    } else if (complaint && status.textContent === complaint) {
      status.textContent = "";
    }
    complaint = problem;
    if (fence) {
      return;
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
      longitude.value = onTheGlobe(at.lng).toFixed(6);
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
  // Drawing stopped: by finishing the outline, or by choosing a circle instead.
  function stopDrawing() {
    corners = null;
    showSketch();
    if (draw) { draw.textContent = "Draw the outline"; }
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
        return [Number(onTheGlobe(corner[1]).toFixed(7)), Number(corner[0].toFixed(7))];
      });
      polygon.value = JSON.stringify({ type: "Polygon", coordinates: [ring] });
      if (radius) { radius.value = ""; }
      stopDrawing();
      drawFence();
      status.textContent = "Outline drawn: save the store to keep it.";
    });
  }
  const circle = document.getElementById("store-circle");
  if (circle && polygon && radius) {
    circle.addEventListener("click", function (event) {
      event.preventDefault();
      stopDrawing();
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

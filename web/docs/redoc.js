// ReDoc for /redoc, from the vendored bundle; the schema is fetched with the page's own ?token=.
const token = new URLSearchParams(window.location.search).get("token");
const schemaUrl = "/openapi.json" + (token ? "?token=" + encodeURIComponent(token) : "");

Redoc.init(schemaUrl, { hideDownloadButton: false }, document.getElementById("redoc"));

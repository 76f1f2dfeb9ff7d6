// Swagger UI for /docs, from the vendored bundle. The page is opened as /docs?token=...
// on a server with a token: the schema is fetched with the same ?token= and every
// "Try it out" request carries it as a Bearer header, like web/api.js does.
const token = new URLSearchParams(window.location.search).get("token");
const schemaUrl = "/openapi.json" + (token ? "?token=" + encodeURIComponent(token) : "");

window.ui = SwaggerUIBundle({
  url: schemaUrl,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  // No badge from the public validator service: nothing leaves this server's origin.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  requestInterceptor: (request) => {
    if (token) request.headers["Authorization"] = "Bearer " + token;
    return request;
  },
});

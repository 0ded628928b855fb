// acctstream's own Swagger UI set-up (the rest of this directory is the
// unmodified swagger-ui-dist package). It loads the spec the service serves
// itself; nothing is fetched from anywhere else. `examples=today` makes the
// examples "Try it out" starts from valid today and small (the last complete
// minute, no sort), so that the first try on the demo shows data at once.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: new URL("../v3/api-docs?examples=today", window.location.href).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "BaseLayout",
    // "Try it out" is on from the start; the Authorize button takes a bearer
    // token, which survives a page reload.
    tryItOutEnabled: true,
    persistAuthorization: true,
    displayRequestDuration: true,
    // Highlighting a large body (a day window is megabytes) froze the tab
    // for a minute; plain text shows at once.
    syntaxHighlight: false,
    // No online validator badge: it would call a third-party service.
    validatorUrl: null,
  });
};

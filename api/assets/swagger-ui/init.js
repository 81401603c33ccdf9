// Swagger UI on this API's own OpenAPI document; "Authorize" takes an API key as a bearer token.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: true,
  persistAuthorization: true,
});

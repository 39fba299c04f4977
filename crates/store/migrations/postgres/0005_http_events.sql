-- HTTP request events (kind 'http'). `http` is the request without its
-- secrets, as JSON: {"method", "url", "headers", "body", "expectStatus",
-- "secretHeaderNames"}; `http_secrets` holds the secret header values,
-- sealed by the server like secret_env. Both NULL for script events.

ALTER TABLE events ADD COLUMN http TEXT;
ALTER TABLE events ADD COLUMN http_secrets BYTEA;

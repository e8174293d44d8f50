"""Account owners in the browser: sign-in, server-side sessions, and the session checks
(cookie, CSRF token) that dashboard routes depend on."""

"""The admin UI and its JSON API: pages and handlers, what they do (service), login, sessions, the live dashboard."""

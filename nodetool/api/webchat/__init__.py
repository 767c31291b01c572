"""The web chat served by `nodetool serve` at `/` (see docs/webchat.md).

`site.install_webchat(app)` mounts it; `static/` holds the page, its ES modules and the
vendored browser libraries (`static/vendor/VENDORED.md`).
"""

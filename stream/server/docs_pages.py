"""The pages of /docs (Swagger UI) and /redoc, which the app serves under the token with server.api_docs.

Both load only files under /static (vendored in web/vendor, started by
web/docs/*.js), and both are sent with :data:`DOCS_CSP`, so the browser
itself refuses anything from another origin.
"""

from __future__ import annotations

__all__ = ["DOCS_CSP", "docs_page"]

# The UIs come from web/vendor (see its README): a CDN would put third-party code on
# this server's origin, and offline boxes cannot reach one. Start-up code is an external
# script (web/docs/*.js) so that a script-src 'self' Content-Security-Policy allows it.
_PAGES = {
    "swagger": (
        '<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">',
        '<div id="swagger-ui"></div>',
        ("/static/vendor/swagger-ui/swagger-ui-bundle.js", "/static/docs/swagger.js"),
    ),
    "redoc": (
        "<style>body { margin: 0; padding: 0; }</style>",
        '<div id="redoc"></div>',
        ("/static/vendor/redoc/redoc.standalone.js", "/static/docs/redoc.js"),
    ),
}


# Sent with both pages: the browser itself then refuses anything from another origin, including
# what a bundle hard-codes (ReDoc 2 shows its logo from cdn.redoc.ly; it hides the image when blocked).
# Both UIs inject inline styles, and ReDoc runs its search in a blob: worker.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; worker-src blob:; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def docs_page(kind: str, title: str) -> str:
    """The HTML of /docs (``"swagger"``) or /redoc (``"redoc"``); everything it loads is under /static."""
    head, body, scripts = _PAGES[kind]
    tags = "\n".join(f'<script src="{src}"></script>' for src in scripts)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{title}</title>\n<link rel="icon" type="image/svg+xml" href="/static/favicon.svg">\n{head}\n'
        f"</head>\n<body>\n{body}\n{tags}\n</body>\n</html>\n"
    )

"""The HTTP API: routes, security, observability and the web page, over :mod:`service.answering`."""

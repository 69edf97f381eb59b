"""The /v1 routers. Each route parses, authorises (SignedRoute), calls one domain function and
maps its result; no business rules here."""

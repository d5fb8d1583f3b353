"""A Flask app gated by tollgate, two ways.

1. Tokens: a client (a mobile app, a script, another service) sends the access token tollgate
   gave it as ``Authorization: Bearer …``. This app checks it with PyJWT against tollgate's
   published keys (``/.well-known/jwks.json``, fetched once and again when a token names a new
   key): signature (EdDSA only), issuer, audience and expiry. No call to tollgate per request.
   The ``plan`` claim says what the user pays for; it is as fresh as the token (minutes).

2. Behind a proxy: nginx asks tollgate about every request (forward-auth, ``auth_request``) and
   passes the answer on as ``X-Tollgate-*`` headers, which it always overwrites. The app trusts
   those headers only when it is told it runs behind that proxy (``TRUST_PROXY=1``) and is not
   reachable any other way.

Settings (environment): TOLLGATE_URL (tollgate's base URL, which is also the tokens' issuer),
TOLLGATE_AUDIENCE (defaults to TOLLGATE_URL), PAID_PLANS (comma-separated plan ids, default
``pro,team``), TRUST_PROXY (``1`` behind nginx forward-auth), PORT.
"""

import functools
import os

import jwt
from flask import Flask, g, jsonify, request

TOLLGATE_URL = os.environ["TOLLGATE_URL"].rstrip("/")
AUDIENCE = os.environ.get("TOLLGATE_AUDIENCE", TOLLGATE_URL)
PAID_PLANS = set(os.environ.get("PAID_PLANS", "pro,team").split(","))
TRUST_PROXY = os.environ.get("TRUST_PROXY") == "1"

# Caches the key set and fetches it again when a token names a key it does not hold (after a
# `tollgate jwt rotate`).
jwks = jwt.PyJWKClient(f"{TOLLGATE_URL}/.well-known/jwks.json", cache_keys=True)

app = Flask(__name__)


def refuse(status, error):
    return jsonify({"error": error}), status


def current_user():
    """The user of this request as a dict with ``sub``, ``email`` and ``plan``, or None."""
    if TRUST_PROXY:
        user = request.headers.get("X-Tollgate-User-Id", "")
        if not user:
            return None
        return {
            "sub": user,
            "email": request.headers.get("X-Tollgate-Email", ""),
            "plan": request.headers.get("X-Tollgate-Plan", ""),
            "via": "proxy",
        }
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        key = jwks.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            audience=AUDIENCE,
            issuer=TOLLGATE_URL,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.PyJWTError:
        return None
    claims["via"] = "token"
    return claims


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        g.user = current_user()
        if g.user is None:
            return refuse(401, "unauthenticated")
        return view(*args, **kwargs)

    return wrapped


def plan_required(view):
    @functools.wraps(view)
    @login_required
    def wrapped(*args, **kwargs):
        if g.user.get("plan") not in PAID_PLANS:
            return refuse(403, "upgrade_required")
        return view(*args, **kwargs)

    return wrapped


@app.get("/hello")
@login_required
def hello():
    return jsonify({"hello": g.user["email"], "plan": g.user.get("plan"), "via": g.user["via"]})


@app.get("/reports")
@plan_required
def reports():
    return jsonify({"reports": ["q1", "q2"], "plan": g.user["plan"], "via": g.user["via"]})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))

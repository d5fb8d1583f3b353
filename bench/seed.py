"""Seeds a benchmark run: a Pro subscriber with a session and an API key, a second customer whose
distinct subscription events are pre-signed for the webhook path, and a login body.

    python3 bench/seed.py BASE_URL WEBHOOK_SECRET WORK_DIR EVENT_COUNT
"""
import hashlib, hmac, json, sys, time, urllib.parse, urllib.request

base, secret, work, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
PASSWORD = "correct horse battery staple"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)


def call(url, body=None, cookie=None, form=False, headers=None):
    h = dict(headers or {})
    data = None
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            h["content-type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            h["content-type"] = "application/json"
    if cookie:
        h["cookie"] = cookie
    req = urllib.request.Request(url, data=data, headers=h)
    try:
        resp = opener.open(req)
    except urllib.error.HTTPError as e:
        resp = e
    return resp.status, resp.headers, resp.read()


def subscriber(email, plan):
    status, headers, body = call(f"{base}/api/auth/register", {"email": email, "password": PASSWORD})
    assert status == 201, (status, body)
    cookie = headers["set-cookie"].split(";")[0]
    status, _, body = call(f"{base}/api/billing/checkout", {"plan": plan, "interval": "month"}, cookie)
    assert status == 200, (status, body)
    checkout = json.loads(body)["url"]
    status, _, _ = call(checkout, {"action": "pay"}, form=True)
    assert status == 303, status
    for _ in range(400):
        me = json.loads(call(f"{base}/api/me", cookie=cookie)[2])
        if me["access"]["plan"] == plan:
            break
        time.sleep(0.025)
    else:
        raise SystemExit(f"{email} never became {plan}")
    sim = checkout.split("/checkout/")[0]
    auth = {"authorization": "Bearer sk_test_bench"}
    query = urllib.parse.quote(f"metadata['tollgate_user_id']:'{me['id']}'")
    customer = json.loads(call(f"{sim}/v1/customers/search?query={query}", headers=auth)[2])["data"][0]["id"]
    return cookie, customer


cookie, _ = subscriber("bench@example.com", "pro")
_, hooks_customer = subscriber("hooks@example.com", "team")
open(f"{work}/cookie", "w").write(cookie)
status, _, body = call(f"{base}/api/keys", {"name": "bench", "scopes": ["read"]}, cookie)
assert status == 201, (status, body)
open(f"{work}/key", "w").write(json.loads(body)["key"])
open(f"{work}/login.json", "w").write(json.dumps({"email": "bench@example.com", "password": PASSWORD}))


def signed_event(kind, i):
    """A validly signed customer.subscription.updated event creating its own subscription row
    for the second customer (canceled, so the access of the measured user is not touched):
    the Stripe-Signature header and the body."""
    event = {
        "id": f"evt_{kind}_{now}_{i}", "object": "event", "type": "customer.subscription.updated",
        "created": now, "livemode": False, "pending_webhooks": 1,
        "data": {"object": {
            "id": f"sub_{kind}_{now}_{i}", "object": "subscription", "customer": hooks_customer,
            "status": "canceled", "cancel_at_period_end": False,
            "items": {"data": [{"price": {"id": "price_bench"}, "quantity": 1, "current_period_end": now}]},
        }},
    }
    body = json.dumps(event, separators=(",", ":"))
    mac = hmac.new(secret.encode(), f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={now},v1={mac}", body


# Distinct events, each sent once by the bench (signed as the duplicates below, which are checked).
now = int(time.time())
with open(f"{work}/events.txt", "w") as out:
    for i in range(count):
        sig, body = signed_event("bench", i)
        out.write(f"{sig}\t{body}\n")


# Duplicates: events stored once here, then replayed by the bench (Stripe redelivers often).
dups = max(50, min(2000, count // 50))
with open(f"{work}/dups.txt", "w") as out:
    for i in range(dups):
        sig, body = signed_event("dup", i)
        req = urllib.request.Request(f"{base}/webhooks/stripe", data=body.encode(), headers={"stripe-signature": sig, "content-type": "application/json"})
        answer = json.loads(opener.open(req).read())
        assert answer["outcome"] == "applied", answer
        out.write(f"{sig}\t{body}\n")

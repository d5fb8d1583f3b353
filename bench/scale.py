"""The scale mode's bulk loader (bench/run --scale). Not through HTTP: rows are copied from the
shapes the real flow wrote (bench/seed.py's Pro subscriber), so that seeding a million rows takes
minutes, not hours.

    python3 bench/scale.py shapes DATABASE_URL WORK_DIR
        (tollgate running) waits until the access watch has recorded the seeded subscriber's
        access, then writes WORK_DIR/shapes.json: the users, sessions, billing_customers,
        subscriptions and access_states rows of bench@example.com, and one stored Stripe event
        row per (type, outcome) the flow produced.
    python3 bench/scale.py load DATABASE_URL WORK_DIR USERS SESSIONS EVENTS
        (tollgate running, or not) adds USERS users (distinct ids and addresses, the seeded password
        hash, so any of them can log in); for the first SESSIONS of them a signed-in session
        and, like the seeded subscriber, a Stripe customer, its subscription rows (Pro, active)
        and the access the watch last saw; and EVENTS stored Stripe events spread over those
        customers and the last 30 days. Writes WORK_DIR/cookies: one `name=id` cookie a line,
        one per session, and WORK_DIR/webhook_customers: the Stripe customers of the loaded
        subscribers.
    python3 bench/scale.py retarget WORK_DIR WEBHOOK_SECRET EVENT_FILE...
        re-signs bench/seed.py's pre-signed events (now) for the loaded customers, spread over
        all of them (event k to customer k), so each gets a few rows as real traffic would. The
        small case sends its events for seed.py's second subscriber, whose rows they create;
        bench/run removes those rows after the small case (`trim`), so no customer with tens of
        thousands of subscriptions skews the large case.
    python3 bench/scale.py trim DATABASE_URL WORK_DIR
        removes the small case's subscription rows and tells tollgate to forget its cache (the
        forget-everything statement the README gives for changes by hand).

The bench loads while tollgate runs: a restart would start its built-in Stripe simulator afresh,
with new price ids, and the copied subscriptions would then name prices the catalog does not know.

SQLite: Python's sqlite3, executemany in transactions of 50,000 rows (each short enough that
tollgate's own writers wait for it, within their busy timeout, instead of failing).
PostgreSQL: `psql` with COPY … FROM STDIN in one transaction, then VACUUM ANALYZE (what
autovacuum would do soon anyway, here before the measurement instead of during it).

Every column of a shape row is copied, so columns added by later migrations come along; only
ids, addresses, keys and a few times are changed. The times: subscriptions and their customers
are dated an hour back (so the access watch does not re-check 100,000 users during the
measurement: it re-checks rows changed in the last minute), events are spread over the 30 days
before that. The sessions' `seen_at` is set a day ahead: a request refreshes it (a write)
when it is a minute old, and the bench must measure the same read path on every run whatever
the order (otherwise the first run over 100,000 sessions would write each of them back once and
the next would not).
"""
import base64, hashlib, itertools, json, os, random, string, subprocess, sys, time

USER = "bench@example.com"
DAY = 86400


def sqlite_path(url):
    path = url[len("sqlite://"):]
    return path.split("?", 1)[0]


class Sqlite:
    def __init__(self, url):
        import sqlite3
        self.conn = sqlite3.connect(sqlite_path(url), timeout=30, isolation_level=None)
        self.conn.row_factory = sqlite3.Row

    def rows(self, sql, *args):
        return [dict(r) for r in self.conn.execute(sql, args)]

    def load(self, tables):
        c = self.conn
        c.execute("PRAGMA synchronous = OFF")
        c.execute("PRAGMA cache_size = -1000000")  # 1 GB of pages while loading
        c.execute("PRAGMA foreign_keys = ON")
        for table, columns, rows in tables:
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            while True:
                chunk = list(itertools.islice(rows, 50000))
                if not chunk:
                    break
                c.execute("BEGIN IMMEDIATE")
                c.executemany(sql, chunk)
                c.execute("COMMIT")
        c.execute("PRAGMA wal_checkpoint(PASSIVE)")
        c.close()


def copy_text(value):
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str):
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return str(value)


class Postgres:
    def __init__(self, url):
        self.url = url

    def psql(self, *args, **kwargs):
        return subprocess.run(["psql", self.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", *args],
                              check=True, **kwargs)

    def rows(self, sql, *args):
        # Only constant arguments (the seeded address) come here; quote them as literals.
        for i, a in reversed(list(enumerate(args, 1))):
            sql = sql.replace(f"${i}", "'" + str(a).replace("'", "''") + "'")
        out = self.psql("-At", "-c", f"SELECT row_to_json(r) FROM ({sql}) r",
                        capture_output=True, text=True).stdout
        return [json.loads(line) for line in out.splitlines() if line]

    def load(self, tables):
        proc = subprocess.Popen(["psql", self.url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                                stdin=subprocess.PIPE, text=True)
        w = proc.stdin.write
        w("BEGIN;\n")
        for table, columns, rows in tables:
            w(f"COPY {table} ({', '.join(columns)}) FROM STDIN;\n")
            batch = []
            for row in rows:
                batch.append("\t".join(copy_text(v) for v in row))
                if len(batch) == 10000:
                    w("\n".join(batch) + "\n")
                    batch = []
            if batch:
                w("\n".join(batch) + "\n")
            w("\\.\n")
        w("COMMIT;\n")
        proc.stdin.close()
        if proc.wait() != 0:
            raise SystemExit("psql failed to load the rows")
        t = time.time()
        self.psql("-c", "VACUUM ANALYZE")
        print(f"bulk load: VACUUM ANALYZE took {time.time() - t:.1f} s", file=sys.stderr)


def connect(url):
    if url.startswith("sqlite:"):
        return Sqlite(url)
    if url.startswith(("postgres:", "postgresql:")):
        return Postgres(url)
    raise SystemExit(f"unknown database URL {url}")


def shapes(db, work):
    for _ in range(200):  # the watch looks every 5 s
        user = db.rows("SELECT * FROM users WHERE email_norm = $1", USER)
        assert len(user) == 1, f"{USER} was not seeded"
        user = user[0]
        access = db.rows("SELECT * FROM access_states WHERE user_id = $1", user["id"])
        if access and access[0]["plan"]:
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"the access watch never recorded {USER}'s plan")
    uid = user["id"]
    out = {
        "users": user,
        "sessions": db.rows("SELECT * FROM sessions WHERE user_id = $1 ORDER BY created_at DESC", uid)[:1],
        "billing_customers": db.rows("SELECT * FROM billing_customers WHERE user_id = $1", uid),
        "subscriptions": db.rows("SELECT * FROM subscriptions WHERE user_id = $1 ORDER BY created_at", uid),
        "access_states": access,
        # One stored event of each (type, outcome) the flow produced.
        "stripe_events": list({(e["type"], e["outcome"]): e for e in
                               db.rows("SELECT * FROM stripe_events ORDER BY received_at")}.values()),
    }
    for table in ("sessions", "billing_customers", "subscriptions", "stripe_events"):
        if not out[table]:
            raise SystemExit(f"no {table} row to copy: did the seeding change?")
    json.dump(out, open(f"{work}/shapes.json", "w"), indent=1)
    return out


def hex_id(prefix, length=32):
    return f"{prefix}_{os.urandom(length // 2).hex()}"


ALNUM = string.ascii_letters + string.digits


def stripe_id(prefix):
    """Like the simulator's (and Stripe's) ids: 24 letters and digits after the prefix."""
    return f"{prefix}_" + "".join(random.choices(ALNUM, k=24))


def session_id():
    """A tower-sessions Id as its Display writes it: an i128's 16 little-endian bytes, base64url
    without padding (22 characters). Any 16 random bytes are a valid id."""
    return base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def load(db, work, n_users, n_sessions, n_events):
    if n_sessions > n_users:
        raise SystemExit("SESSIONS must not exceed USERS")
    shape = json.load(open(f"{work}/shapes.json"))
    cookie_name = open(f"{work}/cookie").read().strip().split("=", 1)[0]
    now = int(time.time())
    back = now - 3600  # an hour ago: see the module's comment
    t0 = time.time()

    user_shape = shape["users"]
    user_ids = [hex_id(user_shape["id"].split("_")[0]) for _ in range(n_users)]

    def users():
        for i, uid in enumerate(user_ids):
            row = dict(user_shape, id=uid, email=f"scale{i}@example.com", email_norm=f"scale{i}@example.com")
            yield row

    session_shape = shape["sessions"][0]
    data_shape = json.loads(session_shape["data"])
    cookies = []

    def sessions():
        for uid in user_ids[:n_sessions]:
            sid = session_id()
            cookies.append(f"{cookie_name}={sid}")
            data = dict(data_shape, uid=uid, epoch=user_shape["session_epoch"])
            if "seen_at" in data:
                data["seen_at"] = now + DAY
            yield dict(session_shape, id_hash=hashlib.sha256(sid.encode()).hexdigest(), user_id=uid,
                       data=json.dumps(data, separators=(",", ":")))

    customer_ids = [stripe_id("cus") for _ in range(n_sessions)]
    (customer_shape,) = shape["billing_customers"]

    def customers():
        for uid, cus in zip(user_ids, customer_ids):
            yield dict(customer_shape, id=hex_id(customer_shape["id"].split("_")[0]), user_id=uid,
                       stripe_customer_id=cus, idempotency_key=hex_id("idem"),
                       created_at=back, updated_at=back)

    def subscriptions():
        for uid, cus in zip(user_ids, customer_ids):
            for sub in shape["subscriptions"]:
                yield dict(sub, id=stripe_id("sub"), user_id=uid, customer_id=cus,
                           created_at=back, updated_at=back, stripe_updated=min(sub["stripe_updated"], back))

    def accesses():
        for uid in user_ids[:n_sessions]:
            for a in shape["access_states"]:
                yield dict(a, user_id=uid, seen_at=back)

    event_shapes = shape["stripe_events"]

    def events():
        span = 30 * DAY
        for i in range(n_events):
            e = event_shapes[i % len(event_shapes)]
            created = back - span + (span * i) // max(n_events, 1)
            cus = customer_ids[i % len(customer_ids)] if customer_ids and e["customer_id"] else e["customer_id"]
            yield dict(e, id=stripe_id("evt"), customer_id=cus, created=created, received_at=created + 1,
                       follow_up=None)

    def table(name, columns, rows):
        return name, columns, (tuple(r[c] for c in columns) for r in rows)

    db.load([
        table("users", list(user_shape), users()),
        table("sessions", list(session_shape), sessions()),
        table("billing_customers", list(customer_shape), customers()),
        table("subscriptions", list(shape["subscriptions"][0]), subscriptions()),
        table("access_states", list(shape["access_states"][0]), accesses()),
        table("stripe_events", list(event_shapes[0]), events()),
    ])
    open(f"{work}/webhook_customers", "w").write("\n".join(reversed(customer_ids)) + "\n")
    random.shuffle(cookies)  # the first K lines: K sessions of users loaded at any point
    open(f"{work}/cookies", "w").write("\n".join(cookies) + "\n")
    print(f"bulk load: {n_users:,} users, {n_sessions:,} sessions, {n_events:,} stored events "
          f"in {time.time() - t0:.1f} s", file=sys.stderr)


def trim(db):
    if isinstance(db, Sqlite):
        db.conn.execute("DELETE FROM subscriptions WHERE id LIKE 'sub_bench_%'")
        try:
            db.conn.execute("INSERT INTO cache_forgets (instance, keys, at) VALUES ('bench', '*', 0)")
        except Exception:  # an older tollgate (its entries live 500 ms): nothing to tell
            pass
    else:
        db.psql("-c", "DELETE FROM subscriptions WHERE id LIKE 'sub_bench_%'")
        db.psql("-c", "SELECT pg_notify('tollgate_cache', 'bench *')", capture_output=True)


def retarget(work, secret, files):
    import hmac
    customers = open(f"{work}/webhook_customers").read().split()
    now = int(time.time())
    # Events spread over every loaded customer, each file from where the last one stopped: a
    # customer gets a few new rows, not one customer all of them (as real traffic).
    k = 0
    for path in files:
        lines = []
        for line in open(path):
            _, body = line.rstrip("\n").split("\t", 1)
            event = json.loads(body)
            event["created"] = now
            event["data"]["object"]["customer"] = customers[k % len(customers)]
            k += 1
            body = json.dumps(event, separators=(",", ":"))
            mac = hmac.new(secret.encode(), f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
            lines.append(f"t={now},v1={mac}\t{body}\n")
        open(path, "w").writelines(lines)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "retarget":
        retarget(sys.argv[2], sys.argv[3], sys.argv[4:])
        sys.exit(0)
    url, work = sys.argv[2], sys.argv[3]
    db = connect(url)
    if cmd == "shapes":
        shapes(db, work)
    elif cmd == "trim":
        trim(db)
    elif cmd == "load":
        load(db, work, *(int(a) for a in sys.argv[4:7]))
    else:
        raise SystemExit(__doc__)

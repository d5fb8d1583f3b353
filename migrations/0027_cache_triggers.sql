-- Cache forgets written by the database itself (src/cache/): every change to a row that an
-- instance may hold in its cache (a session, a user, their subscriptions, roles, API keys and
-- token families) publishes a forget in the same transaction, so it reaches every
-- instance exactly when, and only if, it commits, whoever made it (tollgate, a command, an
-- operator's UPDATE). A forget is `u:<user id>`, `s:<stored session hash>` or `*` (everything).
-- Not seen: changes made with triggers off (`session_replication_role = replica`, as
-- `pg_restore --disable-triggers` and logical replication do); after those, send the
-- forget-everything statement the README gives.
--
-- Two dialects in one migration: tollgate runs the part headed by its engine's name.
--
-- @sqlite
-- A row of `cache_forgets`, which every process reads every 100 ms. The table is made again with
-- `seq` an AUTOINCREMENT rowid: numbers that only grow, never reused even after rows are deleted
-- (a reader remembers the last number it read), and always integers.
DROP TABLE cache_forgets;
CREATE TABLE cache_forgets (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    instance  TEXT NOT NULL,
    keys      TEXT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE TRIGGER cache_forget_session_update AFTER UPDATE ON sessions BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 's:' || OLD.id_hash, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_session_delete AFTER DELETE ON sessions BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 's:' || OLD.id_hash, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_user_update AFTER UPDATE ON users BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 'u:' || OLD.id || ' u:' || NEW.id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_user_delete AFTER DELETE ON users BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 'u:' || OLD.id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_subscription_insert AFTER INSERT ON subscriptions
WHEN NEW.user_id IS NOT NULL BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 'u:' || NEW.user_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_subscription_update AFTER UPDATE ON subscriptions
WHEN OLD.user_id IS NOT NULL OR NEW.user_id IS NOT NULL BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', TRIM(COALESCE('u:' || OLD.user_id, '') || ' ' || COALESCE('u:' || NEW.user_id, '')), CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_subscription_delete AFTER DELETE ON subscriptions
WHEN OLD.user_id IS NOT NULL BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 'u:' || OLD.user_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_role_insert AFTER INSERT ON user_roles BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 'u:' || NEW.user_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_role_update AFTER UPDATE ON user_roles BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 'u:' || OLD.user_id || ' u:' || NEW.user_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_role_delete AFTER DELETE ON user_roles BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 'u:' || OLD.user_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_api_key_update AFTER UPDATE ON api_keys BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 'u:' || OLD.user_id || ' u:' || NEW.user_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_api_key_delete AFTER DELETE ON api_keys BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 'u:' || OLD.user_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_family_update AFTER UPDATE ON token_families BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 'u:' || OLD.user_id || ' u:' || NEW.user_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER cache_forget_family_delete AFTER DELETE ON token_families BEGIN
    INSERT INTO cache_forgets (instance, keys, at)
    VALUES ('db', 'u:' || OLD.user_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
-- @postgres
-- A NOTIFY on `tollgate_cache`, which PostgreSQL delivers to every listening instance when (and
-- only if) the transaction commits. Identical forgets within one transaction arrive once.
-- TG_ARGV: the kind of key (`u` or `s`) and the column that holds it.
CREATE FUNCTION tollgate_cache_forget() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_key text;
    new_key text;
BEGIN
    -- A row written to itself (a lock taken, nothing changed) changes nothing cached.
    IF TG_OP = 'UPDATE' AND to_jsonb(OLD) = to_jsonb(NEW) THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_key := to_jsonb(OLD) ->> TG_ARGV[1];
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_key := to_jsonb(NEW) ->> TG_ARGV[1];
    END IF;
    IF old_key IS NOT NULL THEN
        PERFORM pg_notify('tollgate_cache', 'db ' || TG_ARGV[0] || ':' || old_key);
    END IF;
    IF new_key IS NOT NULL AND new_key IS DISTINCT FROM old_key THEN
        PERFORM pg_notify('tollgate_cache', 'db ' || TG_ARGV[0] || ':' || new_key);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER cache_forget AFTER UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION tollgate_cache_forget('s', 'id_hash');
CREATE TRIGGER cache_forget AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION tollgate_cache_forget('u', 'id');
CREATE TRIGGER cache_forget AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION tollgate_cache_forget('u', 'user_id');
CREATE TRIGGER cache_forget AFTER INSERT OR UPDATE OR DELETE ON user_roles
    FOR EACH ROW EXECUTE FUNCTION tollgate_cache_forget('u', 'user_id');
CREATE TRIGGER cache_forget AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION tollgate_cache_forget('u', 'user_id');
CREATE TRIGGER cache_forget AFTER UPDATE OR DELETE ON token_families
    FOR EACH ROW EXECUTE FUNCTION tollgate_cache_forget('u', 'user_id');
-- TRUNCATE fires no row trigger: it forgets everything.
CREATE FUNCTION tollgate_cache_forget_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tollgate_cache', 'db *');
    RETURN NULL;
END
$$;
CREATE TRIGGER cache_forget_all AFTER TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_cache_forget_all();
CREATE TRIGGER cache_forget_all AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_cache_forget_all();
CREATE TRIGGER cache_forget_all AFTER TRUNCATE ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_cache_forget_all();
CREATE TRIGGER cache_forget_all AFTER TRUNCATE ON user_roles
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_cache_forget_all();
CREATE TRIGGER cache_forget_all AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_cache_forget_all();
CREATE TRIGGER cache_forget_all AFTER TRUNCATE ON token_families
    FOR EACH STATEMENT EXECUTE FUNCTION tollgate_cache_forget_all();

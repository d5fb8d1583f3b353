-- Keys generated on first start and shared by every instance on this database (the CSRF token
-- key). Stored here so that no setting is needed and tokens survive restarts.
CREATE TABLE app_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

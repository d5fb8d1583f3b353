-- Roles on users (`admin` built in; other names are the product's own). Granted by
-- `tollgate user grant` (and later by admins); each grant and revocation is an audit event.
CREATE TABLE user_roles (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    granted_at  BIGINT NOT NULL,
    granted_by  TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);

-- Signed-in devices. Each session records, in its data, the browser family and (when the
-- deployment's proxy supplies one) an approximate place at sign-in; this table holds the users who
-- turned off the "new sign-in" notice, which is on by default.
CREATE TABLE sign_in_notice_opt_outs (
    user_id     TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL
);

-- Fixed-window counters for credential endpoints, in the shared database so that several
-- instances enforce one limit. `key` is "<scope>:<hashed subject>".
CREATE TABLE rate_limits (
    key           TEXT PRIMARY KEY,
    window_start  BIGINT NOT NULL,
    hits          BIGINT NOT NULL
);

-- Sessions stay revoked. Every revocation (password change or reset, a mailbox proof that removes
-- an unproven password) raises the user's session epoch; a session records the epoch it was
-- signed in under, and the session store writes a session back only while that epoch is current,
-- so a request held open across a revocation cannot bring its session back.
ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;

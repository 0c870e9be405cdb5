-- When an admin token was last used (to a minute: written at most once a minute per token and replica), so a tenant
-- listing its tokens can tell a forgotten one from one in use and revoke the others (issue 26).
ALTER TABLE admin_tokens ADD COLUMN last_used_at TIMESTAMPTZ;

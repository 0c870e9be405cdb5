-- The vendor account a request acted on, as its headers named it (Stripe-Account, Stripe-Context): a charge for a
-- connected account is audited under that account (DESIGN §7, §10). Null when the request named none.
ALTER TABLE audit_events ADD COLUMN vendor_account TEXT;

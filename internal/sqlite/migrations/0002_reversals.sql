-- Money the provider took back from a succeeded gift: refunded (cumulative,
-- as Stripe's charge.refunded reports it) and disputed. Both come off the
-- campaign's raised total; the gift stays succeeded.
ALTER TABLE donations ADD COLUMN refunded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE donations ADD COLUMN disputed INTEGER NOT NULL DEFAULT 0;

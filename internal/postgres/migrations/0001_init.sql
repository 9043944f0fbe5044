-- Campaigns, donations with their status history, and live totals: the
-- tables of internal/sqlite's 0001_init.sql, with PostgreSQL's types.
-- Times are timestamptz (microseconds). Money is bigint minor units.
-- Tables are unqualified: they go to the schema the store was opened on.

CREATE TABLE meta (
	name  text PRIMARY KEY,
	value bytea NOT NULL
);

CREATE TABLE campaigns (
	id                text PRIMARY KEY,
	name              text NOT NULL,
	currency          text NOT NULL,
	goal              bigint NOT NULL,
	min_amount        bigint NOT NULL,
	max_amount        bigint NOT NULL,
	opens_at          timestamptz NOT NULL,
	closes_at         timestamptz,
	suggested_amounts bigint[] NOT NULL,
	tax_schemes       text[] NOT NULL,
	created_at        timestamptz NOT NULL,
	updated_at        timestamptz NOT NULL
);

-- One row per campaign, updated in the transaction that moves a gift. Every
-- transaction updates totals last, in campaign id order, so that writers
-- never wait on each other in a cycle.
CREATE TABLE totals (
	campaign_id   text PRIMARY KEY REFERENCES campaigns (id),
	raised        bigint NOT NULL DEFAULT 0,
	donations     bigint NOT NULL DEFAULT 0,
	pending       bigint NOT NULL DEFAULT 0,
	pending_count bigint NOT NULL DEFAULT 0,
	waiting       bigint NOT NULL DEFAULT 0,
	updated_at    timestamptz NOT NULL
);

-- seq is the place in the one global line, drawn from the identity as rows
-- are inserted, so it increases within a batch in the batch's order. A
-- rolled-back batch leaves a gap; the line needs only the order.
CREATE TABLE donations (
	seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id                text NOT NULL UNIQUE,
	campaign_id       text NOT NULL,
	idempotency_key   text NOT NULL,
	request_hash      bytea NOT NULL,
	amount            bigint NOT NULL,
	currency          text NOT NULL,
	email             text NOT NULL,
	name              text NOT NULL,
	payment_method    text NOT NULL,
	anonymous         boolean NOT NULL,
	message           text NOT NULL,
	declaration       jsonb,
	client_addr       text NOT NULL,
	status            text NOT NULL CHECK (status IN
		('accepted', 'processing', 'requires_action', 'succeeded', 'failed', 'canceled')),
	attempt           integer NOT NULL DEFAULT 0,
	key_since         timestamptz,
	payment_intent_id text,
	client_secret     text,
	next_action       json, -- json, not jsonb: the provider's bytes come back as sent
	failure_code      text,
	action_since      timestamptz,
	claimed_by        text,
	lease_until       timestamptz,
	created_at        timestamptz NOT NULL,
	updated_at        timestamptz NOT NULL,
	UNIQUE (campaign_id, idempotency_key)
);

-- The line: only waiting rows are in this index, so its head is one look-up
-- however long the line grows.
CREATE INDEX donations_waiting ON donations (seq) WHERE status = 'accepted';
CREATE INDEX donations_leased ON donations (lease_until) WHERE status = 'processing';
CREATE INDEX donations_claimed ON donations (claimed_by) WHERE status = 'processing';
CREATE INDEX donations_action ON donations (action_since) WHERE status = 'requires_action';
CREATE INDEX donations_payment_intent ON donations (payment_intent_id) WHERE payment_intent_id IS NOT NULL;

CREATE TABLE donation_history (
	donation_seq bigint NOT NULL,
	n            integer NOT NULL,
	status       text NOT NULL,
	at           timestamptz NOT NULL,
	failure_code text NOT NULL DEFAULT '',
	note         text NOT NULL DEFAULT '',
	PRIMARY KEY (donation_seq, n)
);

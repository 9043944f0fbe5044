// Package sandbox is a Stripe-compatible payment server: the parts of
// Stripe's API that floodgate uses, imitated closely enough that floodgate's
// real stripe-go code runs against it unchanged. A rehearsal therefore
// exercises exactly the code of the real night; only the URL differs.
//
// It serves, with Stripe's request and response shapes (form-encoded
// requests, JSON bodies, Stripe's error bodies, Request-Id on every
// response, and a Date header read from Options.Clock, not the machine's
// clock, so that a test moving the clock by hand sees one provider time):
//
//	POST /v1/payment_intents              create, confirm=true confirms at once
//	GET  /v1/payment_intents              list, newest first, cursor pagination
//	GET  /v1/payment_intents/{id}         retrieve
//	POST /v1/payment_intents/{id}/confirm confirm again (after a decline)
//	POST /v1/payment_intents/{id}/cancel  cancel
//	POST /v1/payment_methods              tokenise a test card (tok_visa, ...)
//	GET  /v1/payment_methods/{id}         retrieve
//	POST /v1/refunds                      refund, emits charge.refunded
//	GET  /v1/refunds/{id}                 retrieve
//	GET  /v1/events                       list, newest first, cursor pagination
//	GET  /v1/events/{id}                  retrieve
//
// (publishable test keys are accepted for creating payment methods, as
// Stripe.js uses them, and the API allows any origin, as Stripe's does),
// and, outside Stripe's API, for people and tests:
//
//	GET  /_sandbox/3ds/{pi}                 the 3-D Secure challenge page
//	POST /_sandbox/3ds/{pi}/complete|fail   approve or fail the challenge
//	POST /_sandbox/payment_intents/{id}/dispute  open a dispute
//	GET  /_sandbox/ledger                   every PaymentIntent, by donation; request counts by endpoint
//	GET  /_sandbox/cards                    the test cards and what they do
//	GET  /_sandbox/config, POST /_sandbox/config  faults, changed at runtime
//
// The /_sandbox/ routes take no API key and are never rate limited: bind
// the sandbox to a loopback address unless the challenge page must be
// reachable from elsewhere.
//
// Stripe's test payment methods keep Stripe's meaning (pm_card_visa
// succeeds, pm_card_chargeDeclined is declined with card_declined,
// pm_card_authenticationRequired needs 3-D Secure, ...), and every test card
// has a stable fingerprint. Idempotency follows Stripe exactly: the first
// response of a request that began executing is stored, a 500 included,
// and replayed for the retention; a key reused with other parameters or on
// another endpoint is a 400 idempotency_error, a key still executing a
// 409; after the retention the same key executes anew and charges again,
// which is the danger floodgate must survive and so the sandbox reproduces
// it. The contract suite (internal/stripe/stripetest) holds the sandbox to
// the Stripe behaviour floodgate relies on; it also runs against Stripe's
// own test mode when STRIPE_TEST_SECRET_KEY is set.
//
// Events. Every change emits Stripe's events (payment_intent.created,
// .requires_action, .succeeded, .payment_failed, .canceled,
// charge.refunded, charge.dispute.created), each carrying the object as
// the change left it (with its metadata) and request {id,
// idempotency_key} of the API request that caused it, both null for an
// automatic one (the 3-D Secure verdict, a dispute). The same events are
// logged for GET /v1/events and sent to Options.WebhookURL, for the types
// the endpoint is enabled for (Options.WebhookEvents; by default all but
// payment_intent.created). The list takes Stripe's parameters: limit,
// starting_after, ending_before, created (an integer or gt/gte/lt/lte),
// type (exact, or with * as a wildcard: "payment_intent.*"), types[] (up
// to 20 exact names; not with type) and delivery_success: true lists the
// events the endpoint took (2xx), false the rest: still pending, given up
// on, or never sent (no endpoint, or not enabled for the type).
// pending_webhooks is 1 for an event sent and not yet taken, else 0. As
// in Stripe, events more than 30 days old (by Options.Clock) are neither
// listed nor retrieved.
//
// Faults can be injected and changed while the server runs: latency, a 429
// rate limit (token bucket, global and per endpoint), 500s before a write
// takes effect (stored under the key, nothing charged), answers lost after
// a write took effect (the response is stored, the connection closed
// without it), and a full outage. Failures and lost answers apply to POSTs
// only; reads are never faulted except by latency, limits and outages.
// For tests that must order events rather than time them, Options.Arrive
// sees each API request as it arrives, and may hold it or drop it.
//
// Bounds. Everything the sandbox keeps is bounded: request bodies of at
// most 1 MB and 1,000 fields; at most Options.MaxPaymentIntents
// PaymentIntents and as many payment methods (default 500,000; beyond it
// creation is refused with a 400); at most Options.MaxIdempotencyKeys
// stored keys (default 250,000; beyond it the oldest finished key is
// forgotten early, counted in the ledger); a webhook queue of
// Options.WebhookQueue events plus as many awaiting a retry (default
// 10,000; beyond it events are dropped, counted); an event log of the
// newest Options.MaxEvents events (default 100,000, about 1.5 KB each;
// beyond it the oldest is forgotten, counted); and a journal rewritten
// as a snapshot whenever it holds more than twice the records needed to
// describe the live state (and at least 10,000).
//
// State lives in memory. With Options.StatePath every change is appended to
// a JSON-lines journal (created readable by its owner only) and fsynced
// before the response is written, and the journal is replayed on start, so
// a restarted sandbox remembers its PaymentIntents, payment methods,
// idempotency keys and events (journaled with the change that emitted
// them, never made again by the replay). Which events the endpoint took is
// written with the next change, or at Close: after a crash the last few
// may list as not delivered. Events still waiting for delivery when the
// sandbox stops are not sent after the restart; they list as not
// delivered. A change the journal refuses (a full disk, a failed
// fsync) is cut off the file, undone in memory and answered with a 500
// that carries Stripe-Should-Retry: true and is not stored under the
// idempotency key: nothing happened, so resending executes anew. The
// records of one change are appended as a group that a replay applies
// whole or not at all. A damaged journal never stops the start: a torn
// end is cut off, damage elsewhere is dropped, every whole record around
// it kept, each dropped stretch logged with its offset and size, and the
// journal rewritten clean, the damaged one kept beside it as
// StatePath.damaged. Close the sandbox only after the HTTP server in front
// of it has stopped (ListenAndServe does both in that order).
package sandbox

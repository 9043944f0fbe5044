// Package stripe is floodgate's payment adapter: floodgate.Provider over
// stripe-go, pointed at Stripe or at any Stripe-compatible server (the
// sandbox, stripe-mock).
//
// Every call is exactly one HTTP attempt. stripe-go's own retries are off
// (MaxNetworkRetries 0) and net/http is kept from silently replaying a
// request on a reused connection, so that the dispatcher decides, paces and
// counts every attempt. Every failure is a *floodgate.ProviderError whose
// Kind says what the dispatcher must do (see provider.go), or the context's
// error when the caller gave up.
//
// ParseWebhook verifies and decodes Stripe's signed events, trying each
// configured secret so that secrets can be rotated; DecodeEvent turns one
// into what floodgate needs.
//
// Two tests hold the adapter to Stripe. TestStripeMock sends every request
// the adapter makes to stripe-mock, which checks it against Stripe's
// OpenAPI spec (install: go install github.com/stripe/stripe-mock@v0.203.0;
// FLOODGATE_REQUIRE_STRIPE_MOCK makes its absence a failure). The contract
// suite in stripetest checks the behaviour floodgate relies on, against
// the sandbox always and against Stripe's test mode when
// STRIPE_TEST_SECRET_KEY is set.
package stripe

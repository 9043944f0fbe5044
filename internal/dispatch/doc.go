// Package dispatch charges payment orders, whatever they pay for: it
// claims them from the store in line order, sends each to the provider
// within the configured rates, decides every retry itself (policy.go),
// settles the outcome in the store and tells a waiting donor their place
// in line.
//
// It is a set of small services, each with the startstop life cycle, that
// the node starts in this order and stops in reverse:
//
//   - Control (control.go): the pause switch, the breaker on the provider,
//     the provider's health and the node's readiness.
//   - Link (link.go): every provider call, paced by the rate budgets
//     (pacer.go, gate.go), behind Control, timed and counted.
//   - Reconciler (reconciler.go): owns the outcomes the provider left
//     unknown, and looks the payment up.
//   - CardGuard (cardguard.go): the card-testing defence's side here.
//   - Webhooks (webhooks.go): applies verified provider events.
//   - Expirer (expirer.go): cancels gifts left in 3-D Secure too long.
//   - Dispatcher (dispatcher.go, charge.go, claims.go, line.go): the
//     charger; it claims orders, keeps their leases (the claims it holds),
//     and its workers drive each order through the explicit steps of
//     step.go.
//
// Settler (settler.go) records every settlement for all of them; it runs
// nothing of its own.
//
// Exactly-once rests on three rules. The idempotency key of a charge is
// derived from the order and its key generation, and the request from the
// order alone, in the format its generation began with, so a resend (after
// a time-out, or by a new process after kill -9 or an upgrade) can never
// charge twice while the provider keeps the key. An outcome that may or may
// not have happened (a stored 5xx, an idempotency error, a key about to be
// forgotten) is looked up, never guessed. A new key is used only after a
// consistent lookup found no payment for the old one. And every write made
// under a claim carries the claim's fencing token: a dispatcher whose lease
// ran out and whose order another took over cannot apply what it learns
// late.
//
// Every wait of the dispatcher's own (a backoff, a poll, a period, a rate
// budget) runs on the injected clock; only the time limit of a provider
// call, a deadline on the network call itself, runs on the wall clock.
package dispatch

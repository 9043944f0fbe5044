// Package dispatch charges payment orders, whatever they pay for: it claims
// them from the store in line order, sends each to the provider within the
// configured rates, decides every retry itself (policy.go), settles the
// outcome in the store and tells a waiting donor their place in line.
//
// Exactly-once rests on three rules. The idempotency key of a charge is
// derived from the order and its key generation, and the request from the
// order alone, in the format its generation began with, so a resend (after
// a time-out, or by a new process after kill -9 or an upgrade) can never
// charge twice while the provider keeps the key. An outcome that may or may not have happened
// (a stored 5xx, an idempotency error, a key about to be forgotten) is
// looked up, never guessed. A new key is used only after a consistent
// lookup found no payment for the old one. And every write made under a
// claim carries the claim's fencing token: a dispatcher whose lease ran out
// and whose order another took over cannot apply what it learns late.
package dispatch

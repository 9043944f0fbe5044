// Package ingest is the accept path: it decodes and validates a request,
// admits it or sheds it, and makes it durable in a group commit before the
// caller may answer 202.
//
// Every kind of acknowledged write (a donation now, a raffle entry later)
// is a floodgate.Intake and takes the same path at the same speed. The
// path is written once (kind.accept: the key check, the look-up of what
// holds the intake, the limits, the replay of a kept key when a new intake
// is refused, the group commit and the token); a kind contributes only its
// part (how a request becomes an intake, when new ones are taken, where a
// kept one is found by its key). One Batcher serves every kind: one fsync
// per batch, however many requests and kinds the batch holds.
package ingest

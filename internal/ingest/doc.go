// Package ingest is the accept path: it decodes and validates a request,
// admits it or sheds it, and makes it durable in a group commit before the
// caller may answer 202.
//
// The Batcher is generic so that every kind of acknowledged write (a
// donation now, a raffle entry later) takes the same path at the same
// speed: one fsync per batch, however many requests the batch holds.
package ingest

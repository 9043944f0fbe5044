// Package loadgen is floodgate's load generator: open-model arrivals
// (constant, ramp, spike) driven by vegeta, donor journeys and live-total
// subscribers, and a report that tells the truth about what the server
// did.
//
// The truth has three parts. Arrivals are open: a request is due at its
// intended time whether or not earlier requests were answered, as donors
// arrive whether or not the server keeps up. Latency is measured from that
// intended time, not from the moment a worker picked the request up, so a
// server that stalls shows the stall in every request scheduled during it
// (vegeta's own Result.Latency starts when a worker is free and would hide
// the queue: coordinated omission). And every request is accounted for:
// answered 2xx, answered otherwise (by status and problem type), failed on
// the network, or never sent before the run ended.
//
// The server's own cost (CPU per accepted donation, peak resident memory)
// is read from its /metrics before, during and after the run.
package loadgen

package floodgate

// ChargingState says whether a node charges gifts now. Its values are
// the words of the API (a waiting donation's "charging" field and the
// operator's GET /v1/admin/charging "state"), so the string form is the
// wire form and must not change.
type ChargingState string

const (
	// ChargingRunning: gifts are sent to the provider as the rate allows.
	ChargingRunning ChargingState = "running"
	// ChargingPaused: an operator paused charging on every node;
	// donations are accepted and wait.
	ChargingPaused ChargingState = "paused"
	// ChargingWaiting: the provider does not answer; this node's breaker
	// is open and probes it.
	ChargingWaiting ChargingState = "waiting_for_provider"
)

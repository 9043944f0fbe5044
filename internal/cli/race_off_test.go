//go:build !race

package cli

// raceDetector says whether the tests run under the race detector, which
// slows the node several times: backlogs are sized by it.
const raceDetector = false

package loadgen

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHistogramQuantiles compares the histogram with exact percentiles of
// the same values: never below, and within its stated precision above.
func TestLoadHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var exact []time.Duration
	for range 100000 {
		// Log-uniform from 1 µs to 10 s, the range of real latencies.
		d := time.Duration(math.Exp(rng.Float64()*math.Log(1e7)) * 1e3)
		h.Record(d)
		exact = append(exact, d)
	}
	slices.Sort(exact)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := exact[int(math.Ceil(q*float64(len(exact))))-1]
		got := h.Quantile(q)
		if got < want || float64(got-want) > float64(want)/subCount+1 {
			t.Errorf("q%g = %s, exact %s", q, got, want)
		}
	}
	if h.Max() != exact[len(exact)-1] || h.Dist().Min != exact[0] {
		t.Errorf("max %s min %s, exact %s %s", h.Max(), h.Dist().Min, exact[len(exact)-1], exact[0])
	}
	if h.Count() != uint64(len(exact)) {
		t.Errorf("count %d", h.Count())
	}
	above := uint64(0)
	for _, d := range exact {
		if d >= time.Second {
			above++
		}
	}
	if got := h.CountAbove(time.Second); got != above {
		// time.Second is a bucket boundary within precision; allow the
		// values sharing its bucket.
		if got < above || got > above+uint64(len(exact))/1000 {
			t.Errorf("CountAbove(1s) = %d, exact %d", got, above)
		}
	}
}

func TestLoadHistogramBuckets(t *testing.T) {
	for _, v := range []int64{0, 1, 255, 256, 257, 511, 512, 513, 1023, 1024, 1 << 40, 1<<40 + 12345, math.MaxInt64 / 2} {
		i := bucket(v)
		if hi := bucketHigh(i); hi < v {
			t.Errorf("value %d in bucket %d whose highest value is %d", v, i, hi)
		}
		if i > 0 && bucketHigh(i-1) >= v {
			t.Errorf("value %d in bucket %d, but bucket %d reaches %d", v, i, i-1, bucketHigh(i-1))
		}
	}
}

func TestLoadDistJSONRoundTrip(t *testing.T) {
	d := Dist{Count: 3, Min: time.Microsecond, Mean: 1500 * time.Microsecond, P50: time.Millisecond, P90: 2 * time.Millisecond,
		P99: 3 * time.Millisecond, P999: 4 * time.Millisecond, Max: 1234567 * time.Microsecond}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back Dist
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != d {
		t.Errorf("round trip: %+v, want %+v (%s)", back, d, b)
	}
}

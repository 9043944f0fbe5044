package loadgen

import (
	"encoding/json"
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: 2^subBits buckets per power of
// two, so a recorded value is reported within 1/256 (0.4%) of itself, as
// an HDR histogram with two to three significant digits does. Memory stays
// fixed whatever the number of requests: a few tens of kilobytes.
const subBits = 8

const subCount = 1 << subBits

// Histogram records durations in log-linear buckets (HDR style). The
// minimum, maximum and sum are exact. It is not safe for concurrent use;
// the collector holds a lock around it.
type Histogram struct {
	counts []uint64
	n      uint64
	sum    time.Duration
	min    time.Duration
	max    time.Duration
}

// bucket maps a non-negative value to its bucket: values below subCount
// each have their own, and every power of two above is cut into subCount
// equal parts.
func bucket(v int64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits - 1
	return (shift+1)<<subBits + int(v>>shift) - subCount
}

// bucketHigh is the highest value that falls in bucket i.
func bucketHigh(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	shift := i>>subBits - 1
	sub := int64(i&(subCount-1)) + subCount
	return (sub+1)<<shift - 1
}

// Record adds one value; negative values count as zero.
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	i := bucket(int64(d))
	if i >= len(h.counts) {
		grown := make([]uint64, i+1+subCount)
		copy(grown, h.counts)
		h.counts = grown
	}
	h.counts[i]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.max = max(h.max, d)
	h.n++
	h.sum += d
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest value recorded, exactly.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile is the value at or below which a fraction q of the recorded
// values fall (nearest rank), reported as its bucket's highest value and
// never above the exact maximum: a percentile is never flattered.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketHigh(i)), h.max)
		}
	}
	return h.max
}

// Dist summarises the histogram.
func (h *Histogram) Dist() Dist {
	d := Dist{Count: h.n}
	if h.n == 0 {
		return d
	}
	d.Mean = h.sum / time.Duration(h.n)
	d.Min = h.min
	d.P50 = h.Quantile(0.50)
	d.P90 = h.Quantile(0.90)
	d.P99 = h.Quantile(0.99)
	d.P999 = h.Quantile(0.999)
	d.Max = h.max
	return d
}

// CountAbove is how many recorded values are at least d (within the
// histogram's precision).
func (h *Histogram) CountAbove(d time.Duration) uint64 {
	var n uint64
	for i := bucket(int64(max(d, 0))); i < len(h.counts); i++ {
		n += h.counts[i]
	}
	return n
}

// Dist is a latency distribution. In JSON every duration is in
// milliseconds, as a number.
type Dist struct {
	Count uint64
	Min   time.Duration
	Mean  time.Duration
	P50   time.Duration
	P90   time.Duration
	P99   time.Duration
	P999  time.Duration
	Max   time.Duration
}

type distJSON struct {
	Count  uint64  `json:"count"`
	MinMS  float64 `json:"min_ms"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func fromMS(v float64) time.Duration { return time.Duration(math.Round(v * 1e6)) }

// MarshalJSON writes the durations in milliseconds (to the microsecond).
func (d Dist) MarshalJSON() ([]byte, error) {
	return json.Marshal(distJSON{Count: d.Count, MinMS: ms(d.Min), MeanMS: ms(d.Mean), P50MS: ms(d.P50),
		P90MS: ms(d.P90), P99MS: ms(d.P99), P999MS: ms(d.P999), MaxMS: ms(d.Max)})
}

// UnmarshalJSON reads what MarshalJSON wrote, so a saved report can be
// checked again.
func (d *Dist) UnmarshalJSON(b []byte) error {
	var j distJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*d = Dist{Count: j.Count, Min: fromMS(j.MinMS), Mean: fromMS(j.MeanMS), P50: fromMS(j.P50MS), P90: fromMS(j.P90MS),
		P99: fromMS(j.P99MS), P999: fromMS(j.P999MS), Max: fromMS(j.MaxMS)}
	return nil
}

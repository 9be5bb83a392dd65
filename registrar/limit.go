package registrar

import "time"

// tokenBucket limits a rate of events. The zero value (rate 0), or a
// negative rate, allows everything. It is not goroutine-safe; each peer connection owns its own.
type tokenBucket struct {
	rate   float64 // tokens per second; 0 = unlimited
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64) tokenBucket {
	burst := rate
	if burst < 1 {
		burst = 1
	}
	return tokenBucket{rate: rate, burst: burst, tokens: burst}
}

// allow reports whether one more event fits the rate now. The clock is
// read only when there is a limit.
func (b *tokenBucket) allow() bool {
	if b.rate <= 0 {
		return true
	}
	now := time.Now()
	if !b.last.IsZero() {
		b.tokens += now.Sub(b.last).Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// until returns how long it takes for the bucket to hold n tokens (at
// most its burst): zero if it does, or if it has no limit.
func (b *tokenBucket) until(n float64) time.Duration {
	if b.rate <= 0 {
		return 0
	}
	n = min(n, b.burst)
	have := b.tokens
	if !b.last.IsZero() {
		have = min(have+time.Since(b.last).Seconds()*b.rate, b.burst)
	}
	if have >= n {
		return 0
	}
	return time.Duration((n - have) / b.rate * float64(time.Second))
}

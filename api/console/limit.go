package console

import (
	"sync"
	"time"
)

// slower decides how long a sign-in attempt is held before it is answered, from its
// source's recent failures. It never refuses: a valid token signs in whatever came before
// it, so an attacker who shares an officer's address (behind a proxy, every officer
// does) cannot lock the officer out by failing on purpose.
//
// Why the valid attempt is held too: the hold is decided from the failures before the
// attempt, not from its own outcome, so it is the same whether the token is right or
// wrong. Were only failures held, the absence of a quick answer would itself say "wrong"
// and a guesser could give up on each attempt after a few milliseconds; as it is, an
// attempt says nothing until its hold is over. So one connection gets at most one answer
// per hold (at most 1/maxHold once the source is hot), and a spray over many connections
// at most one per connection per hold, while an officer behind the same address waits
// at most maxHold and is signed in.
//
// Each source has a level: one per failure, down by one every whole forget, capped at ceiling
// so that a source cools in bounded time once its failures stop. Below free the attempt
// is not held (a person mistyping is not slowed); from there the hold doubles with every
// failure, from firstHold up to maxHold (hold). A failure counts the moment the token is
// checked, before the hold, so attempts made in parallel see each other's failures.
//
// It starts no goroutine: sources that have cooled are forgotten when the map is full,
// and when it is still full the sources it does not know share one level, so memory
// stays bounded whatever the spray of addresses.
type slower struct {
	mu        sync.Mutex
	free      int
	forget    time.Duration
	firstHold time.Duration
	maxHold   time.Duration
	ceiling   int
	max       int
	m         map[string]*level
}

// level is a source's recent failures: n, less one for every forget since last.
type level struct {
	n    int
	last time.Time
}

// overflow is the shared level of sources the full slower does not track.
const overflow = "overflow"

func newSlower(free int, forget, firstHold, maxHold time.Duration, max int) *slower {
	// The ceiling is one failure past where the hold reaches maxHold: a hot source stays
	// at maxHold for one forget after its last failure, and a level higher still would
	// only make it take longer to cool.
	ceiling := free + 1
	for d := firstHold; d < maxHold; d *= 2 {
		ceiling++
	}
	return &slower{free: free, forget: forget, firstHold: firstHold, maxHold: maxHold,
		ceiling: ceiling, max: max, m: make(map[string]*level)}
}

// decay forgets one failure of lv for every whole forget since lv.last.
func (s *slower) decay(lv *level, now time.Time) {
	steps := int(now.Sub(lv.last) / s.forget)
	switch {
	case steps <= 0:
	case steps >= lv.n:
		lv.n, lv.last = 0, now
	default:
		lv.n -= steps
		lv.last = lv.last.Add(time.Duration(steps) * s.forget)
	}
}

// hold is how long an attempt from a source at level n waits: firstHold at free,
// doubling with every failure above it, at most maxHold.
func (s *slower) hold(n int) time.Duration {
	if n < s.free {
		return 0
	}
	d := s.firstHold
	for k := n - s.free; k > 0 && d < s.maxHold; k-- {
		d *= 2
	}
	return min(d, s.maxHold)
}

// attempt returns how long the attempt of source key at now is held, judged by the
// failures before it, and counts it if it failed.
func (s *slower) attempt(key string, now time.Time, failed bool) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	lv := s.m[key]
	if lv == nil && failed && len(s.m) >= s.max {
		s.sweep(now) // room for key, if some source has cooled
	}
	if lv == nil && len(s.m) >= s.max {
		lv = s.m[overflow] // a source not tracked past a full map: the shared level
	}
	var d time.Duration
	if lv != nil {
		s.decay(lv, now)
		d = s.hold(lv.n)
	}
	if !failed {
		return d
	}
	if lv == nil {
		if len(s.m) >= s.max {
			key = overflow
		}
		lv = &level{last: now}
		s.m[key] = lv
	}
	if lv.n == 0 {
		lv.last = now // forgetting starts from the first failure, not from the level's birth
	}
	lv.n = min(s.ceiling, lv.n+1)
	return d
}

// sweep forgets sources that have cooled: they hold nothing a fresh one would not.
func (s *slower) sweep(now time.Time) {
	for k, lv := range s.m {
		s.decay(lv, now)
		if lv.n == 0 {
			delete(s.m, k)
		}
	}
}

func (s *slower) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

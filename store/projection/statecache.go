package projection

import (
	"sync"

	"github.com/kycstate/kycstate/domain"
)

// stateCacheSize bounds the states Projection.State keeps decoded: at a few hundred
// bytes each, a few megabytes.
const stateCacheSize = 8192

// stateCache holds decoded states between reads. Its one rule: an entry is never older
// than the last batch that changed its applicant. Apply drops a batch's applicants after
// the commit and before the checkpoint advances, and bumps the generation; State puts
// what it read only if no drop happened since it looked at the generation, before its
// read transaction began (a read that began before a commit may have seen the old
// state, and would otherwise put it back after the drop).
type stateCache struct {
	mu  sync.Mutex
	gen uint64
	m   map[domain.ApplicantKey]domain.State
}

// get returns a copy of id's cached state: callers may change what they get.
func (c *stateCache) get(id domain.ApplicantKey) (domain.State, bool) {
	c.mu.Lock()
	st, ok := c.m[id]
	c.mu.Unlock()
	if !ok {
		return domain.State{}, false
	}
	return st.Clone(), true
}

func (c *stateCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put keeps st for id if nothing was dropped since generation gen. A full cache makes
// room by dropping an entry at random (map order).
func (c *stateCache) put(id domain.ApplicantKey, st domain.State, gen uint64) {
	st = st.Clone() // the caller keeps its own
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil {
		c.m = make(map[domain.ApplicantKey]domain.State)
	}
	if _, ok := c.m[id]; !ok && len(c.m) >= stateCacheSize {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[id] = st
}

// drop forgets ids and starts a new generation.
func (c *stateCache) drop(ids []domain.ApplicantKey) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, id := range ids {
		delete(c.m, id)
	}
}

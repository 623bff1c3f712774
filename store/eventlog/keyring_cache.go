package eventlog

import (
	"container/list"
	"sync"
	"time"
)

// keyCache is a bounded LRU of unwrapped keys, each used for at most ttl. A tombstone is
// cached as long as it stays in the LRU: an erasure is never undone.
type keyCache struct {
	mu    sync.Mutex
	size  int
	ttl   time.Duration
	ll    *list.List
	items map[string]*list.Element
}

type cacheEntry struct {
	subject string
	k       *key
	at      time.Time
}

func newKeyCache(size int, ttl time.Duration) *keyCache {
	return &keyCache{size: size, ttl: ttl, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *keyCache) get(subject string) *key {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[subject]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !e.k.erased && time.Since(e.at) > c.ttl {
		c.ll.Remove(el)
		delete(c.items, subject)
		return nil
	}
	c.ll.MoveToFront(el)
	return e.k
}

func (c *keyCache) put(subject string, k *key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[subject]; ok {
		el.Value = &cacheEntry{subject: subject, k: k, at: time.Now()}
		c.ll.MoveToFront(el)
		return
	}
	c.items[subject] = c.ll.PushFront(&cacheEntry{subject: subject, k: k, at: time.Now()})
	for c.ll.Len() > c.size {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).subject)
	}
}

func (c *keyCache) drop(subject string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[subject]; ok {
		c.ll.Remove(el)
		delete(c.items, subject)
	}
}

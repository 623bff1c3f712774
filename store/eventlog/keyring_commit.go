// Group commit of new data keys (DESIGN.md section 3). An applicant's first event needs
// its data key durable in KYC_KEYS before the event is sealed under it; with a write of
// its own per key, a burst of new applicants paid one fsync per webhook for the keys,
// serialized on the stream, before the events' group commit. Here the keys asked for
// while one write to KYC_KEYS is in flight are gathered and written together, as one
// atomic batch when there are enough (a batch is one fsync on the server), pipelined
// otherwise, so a webhook of a new applicant costs a share of two writes. A key is
// handed to its callers only once KYC_KEYS has acknowledged it: nothing is sealed, and
// so nothing stored or answered 200, under a key that a crash could lose.

package eventlog

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// keyCommitter gathers the creation of new data keys. Like ingest's committer it has no
// goroutine of its own: the caller that finds no write in flight becomes the writer,
// writes batches until its own key is answered, and hands the writer's role to the
// first caller still waiting.
type keyCommitter struct {
	mu      sync.Mutex
	queue   []*keyCall
	pending map[string]*keyCall // by subject: queued or being written
	writing bool
}

// keyCall is the creation of one subject's key; every caller asking for that subject
// meanwhile waits for the same call, so concurrent first events of one applicant get
// one key.
type keyCall struct {
	subject string
	done    chan struct{} // closed once got or err is set
	lead    chan struct{} // the writer's role is handed to this call (capacity 1)
	gone    bool          // its first caller stopped waiting (under keyCommitter.mu)

	got *key
	err error
}

// createKey returns subject's key, made and stored in KYC_KEYS through the group commit
// when the subject holds none; a key another process stored first is read back. The
// caller has found no key in the cache or the stream.
func (k *Keyring) createKey(ctx context.Context, subject string) (*key, error) {
	kc := &k.commit
	kc.mu.Lock()
	if kc.pending == nil {
		kc.pending = map[string]*keyCall{}
	}
	if c, ok := kc.pending[subject]; ok {
		kc.mu.Unlock()
		select {
		case <-c.done:
			return c.got, c.err
		case <-ctx.Done():
			return nil, domain.E("eventlog.Keyring", domain.KindUnavailable, ctx.Err())
		}
	}
	c := &keyCall{subject: subject, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	kc.pending[subject] = c
	kc.queue = append(kc.queue, c)
	if kc.writing {
		kc.mu.Unlock()
		select {
		case <-c.done:
			return c.got, c.err
		case <-c.lead:
		case <-ctx.Done():
			kc.mu.Lock()
			select {
			case <-c.lead: // handed the role meanwhile: it writes all the same
			default:
				c.gone = true // its key is still written, by whoever writes next
				kc.mu.Unlock()
				return nil, domain.E("eventlog.Keyring", domain.KindUnavailable, ctx.Err())
			}
			kc.mu.Unlock()
		}
	} else {
		kc.writing = true
		kc.mu.Unlock()
	}
	k.writeKeys(ctx, c)
	return c.got, c.err
}

// writeKeys writes batches off the queue until c is answered, then hands the writer's
// role to the first call whose caller still waits (the calls of callers that gave up
// are written by this writer).
func (k *Keyring) writeKeys(ctx context.Context, c *keyCall) {
	kc := &k.commit
	for {
		kc.mu.Lock()
		n := min(len(kc.queue), MaxBatchMsgs)
		batch := make([]*keyCall, n)
		copy(batch, kc.queue)
		kc.queue = append(kc.queue[:0], kc.queue[n:]...)
		kc.mu.Unlock()

		k.writeKeyBatch(ctx, batch)

		kc.mu.Lock()
		for _, b := range batch {
			delete(kc.pending, b.subject)
			close(b.done)
		}
		select {
		case <-c.done:
		default:
			kc.mu.Unlock()
			continue // c was behind this batch
		}
		next := -1
		for i, q := range kc.queue {
			if !q.gone {
				next = i
				break
			}
		}
		switch {
		case len(kc.queue) == 0:
			kc.writing = false
		case next < 0:
			kc.mu.Unlock()
			c = kc.queue[0] // no caller waits: write them here
			continue
		default:
			kc.queue[next].lead <- struct{}{}
		}
		kc.mu.Unlock()
		return
	}
}

// writeKeyBatch makes a key for each call and stores them in one write, each only if
// its subject is still empty; it sets each call's key or error. A subject written
// meanwhile (another process made the key first, or the applicant was erased) is read
// back. The write runs under ctx's values but its own deadline, the request timeout:
// the calls of other callers are in it.
//
// From MinAtomicBatch keys on the write is an atomic batch, below it pipelined
// publishes, as AppendBatch decides for events. BenchmarkKeyBatch on the 2-core test
// machine, fsync always: 4 keys 4.6 ms atomic against 1.3 ms pipelined, 16 keys 4.3
// against 4.1 ms, 32 keys 6.6 against 9.0 ms, 128 keys 10 against 36 ms.
func (k *Keyring) writeKeyBatch(ctx context.Context, batch []*keyCall) {
	k.storeKeys(ctx, batch, k.atomic && len(batch) >= MinAtomicBatch)
}

// storeKeys is writeKeyBatch, as one atomic batch or pipelined as asked.
func (k *Keyring) storeKeys(ctx context.Context, batch []*keyCall, atomic bool) {
	const op = "eventlog.Keyring"
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.l.requestTimeout)
	defer cancel()
	msgs := make([]*nats.Msg, len(batch))
	raws := make([][]byte, len(batch))
	for i, c := range batch {
		raws[i], msgs[i] = k.newKeyMsg(c.subject)
	}
	if k.beforeWrite != nil {
		k.beforeWrite(len(batch))
	}
	stored := make([]bool, len(batch))
	errs := make([]error, len(batch))
	atomicDone := false
	if atomic && len(batch) > 1 {
		_, err := k.l.commitBatch(wctx, KeyStream, msgs)
		var apiErr *jetstream.APIError
		switch {
		case err == nil:
			for i := range batch {
				stored[i] = true
			}
			atomicDone = true
		case errors.As(err, &apiErr):
			// Refused whole, nothing stored: a subject written meanwhile is the expected
			// case. Each key then goes alone and gets its own answer.
			for _, m := range msgs {
				m.Header.Del(headerBatchID)
				m.Header.Del(headerBatchSeq)
				m.Header.Del(headerBatchCommit)
			}
		default:
			for i := range batch {
				errs[i] = err
			}
			atomicDone = true
		}
	}
	if !atomicDone {
		var wg sync.WaitGroup
		for i := range batch {
			wg.Go(func() {
				_, err := k.l.js.PublishMsg(wctx, msgs[i])
				if err == nil {
					stored[i] = true
				} else {
					errs[i] = err
				}
			})
		}
		wg.Wait()
	}
	for i, c := range batch {
		switch {
		case stored[i]:
			aead, err := newAEAD(raws[i])
			if err != nil {
				c.err = domain.E(op, domain.KindInternal, err)
				continue
			}
			c.got = &key{raw: raws[i], aead: aead}
			k.cache.put(c.subject, c.got)
		case isWrongLastSeq(errs[i]):
			// Another process was first: its key (or a tombstone) is the applicant's.
			got, err := k.readKey(wctx, c.subject)
			switch {
			case err != nil:
				c.err = err
			case got == nil:
				c.err = domain.E(op, domain.KindUnavailable, "the data key was neither created nor readable")
			default:
				c.got = got
				k.cache.put(c.subject, got)
			}
		default:
			c.err = domain.E(op, domain.KindUnavailable, fmt.Errorf("store data key: %w", errs[i]))
		}
	}
	if k.afterWrite != nil {
		k.afterWrite(wctx)
	}
}

// newKeyMsg makes a fresh data key for subject and the message that stores it, wrapped
// under keys.master, only if the subject is still empty.
func (k *Keyring) newKeyMsg(subject string) ([]byte, *nats.Msg) {
	raw := make([]byte, 32)
	rand.Read(raw)
	m := keyMsg{V: 1, Kind: kindData, KeyID: k.current.id, Key: wrap(k.current, raw, subject), At: time.Now().UTC()}
	if subject == keyIndexSubject {
		m.Kind = kindIndex
	} else {
		parts := strings.Split(subject, ".")
		m.App, m.ID = parts[3], parts[4]
	}
	data, _ := json.Marshal(m)
	msg := &nats.Msg{Subject: subject, Data: data, Header: make(nats.Header, 5)}
	msg.Header.Set(jetstream.ExpectedStreamHeader, KeyStream)
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.Itoa(0))
	return raw, msg
}

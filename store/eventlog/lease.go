package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go/jetstream"
)

// Leases are named, expiring locks in a JetStream key-value bucket, so that of several
// query nodes one at a time runs a periodic job (the reconciliation sweep, the retention
// sweep). A lease also carries a little data that its holder saves as it goes (a sweep's
// progress) and that the next holder reads, so a job killed half-way can resume.
//
// Every change is a compare-and-set on the key's revision: two nodes can never both
// believe they hold a lease they acquired or renewed. Expiry is judged by the clock of the
// node that wants the lease; clocks of the nodes must agree to well within the TTL.
type Leases struct {
	kv jetstream.KeyValue
}

// LeaseBucket is the key-value bucket leases live in.
const LeaseBucket = "KYC_LEASES"

// ErrLeaseHeld is the cause when another holder has the lease (KindConflict).
var ErrLeaseHeld = errors.New("lease held by another node")

// ErrLeaseLost is the cause when a renewal finds the lease taken over or released
// (KindConflict): the caller must stop the job the lease guards.
var ErrLeaseLost = errors.New("lease lost")

// OpenLeases creates or opens the lease bucket with the log's replicas. It keeps one
// revision per key: a lease's history is of no use. Errors: KindUnavailable.
func OpenLeases(ctx context.Context, c *Conn, replicas int) (*Leases, error) {
	const op = "eventlog.OpenLeases"
	if c == nil || c.JS == nil {
		return nil, domain.E(op, domain.KindInvalid, "no NATS connection")
	}
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := c.JS.KeyValue(ctx, LeaseBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = c.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: LeaseBucket, Description: "kycstate leases: which node runs a periodic job",
			History: 1, Storage: jetstream.FileStorage, Replicas: replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = c.JS.KeyValue(ctx, LeaseBucket)
		}
	}
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, fmt.Errorf("bucket %s: %w", LeaseBucket, err))
	}
	return &Leases{kv: kv}, nil
}

// leaseValue is a lease as stored.
type leaseValue struct {
	Holder  string          `json:"holder"`
	Expires time.Time       `json:"expires"` // zero: released
	Data    json.RawMessage `json:"data,omitempty"`
}

// Lease is one held lease. Its methods are not safe for concurrent use.
type Lease struct {
	kv     jetstream.KeyValue
	name   string
	holder string
	ttl    time.Duration
	rev    uint64
	data   []byte
	prior  string
}

// Acquire takes the lease name for holder for ttl when it is free, released, expired, or
// already holder's. name must be a valid key ([-/_=.a-zA-Z0-9]). The lease keeps the data
// its last holder saved (Data). Errors: KindConflict with ErrLeaseHeld when another holder
// has it; KindInvalid for a bad name or ttl; KindUnavailable when the bucket does not
// answer.
func (ls *Leases) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (*Lease, error) {
	const op = "eventlog.Leases.Acquire"
	if ttl <= 0 || holder == "" {
		return nil, domain.E(op, domain.KindInvalid, "a lease needs a holder and a positive ttl")
	}
	l := &Lease{kv: ls.kv, name: name, holder: holder, ttl: ttl}
	now := time.Now()
	entry, err := ls.kv.Get(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		b, _ := json.Marshal(leaseValue{Holder: holder, Expires: now.Add(ttl)})
		rev, err := ls.kv.Create(ctx, name, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, domain.E(op, domain.KindConflict, ErrLeaseHeld)
		}
		if err != nil {
			return nil, leaseErr(op, err)
		}
		l.rev = rev
		return l, nil
	case err != nil:
		return nil, leaseErr(op, err)
	}
	var v leaseValue
	if err := json.Unmarshal(entry.Value(), &v); err != nil {
		v = leaseValue{} // unreadable: treat as free, and overwrite it
	}
	if v.Holder != holder && !v.Expires.IsZero() && now.Before(v.Expires) {
		return nil, domain.E(op, domain.KindConflict, ErrLeaseHeld)
	}
	l.prior, l.data = v.Holder, v.Data
	b, _ := json.Marshal(leaseValue{Holder: holder, Expires: now.Add(ttl), Data: v.Data})
	rev, err := ls.kv.Update(ctx, name, b, entry.Revision())
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, domain.E(op, domain.KindConflict, ErrLeaseHeld) // another node was quicker
	}
	if err != nil {
		return nil, leaseErr(op, err)
	}
	l.rev = rev
	return l, nil
}

// Data is what the lease's holders last saved (Renew), nil if nothing.
func (l *Lease) Data() []byte { return l.data }

// Prior is the holder the lease was taken from ("" for a new lease): another node's name
// when this node took it over.
func (l *Lease) Prior() string { return l.prior }

// Renew extends the lease by its ttl from now and, when data is not nil, saves data with
// it. Errors: KindConflict with ErrLeaseLost when another holder took it over (it had
// expired) or it was released; KindUnavailable when the bucket does not answer (the
// lease still runs out at its old expiry).
func (l *Lease) Renew(ctx context.Context, data []byte) error {
	const op = "eventlog.Lease.Renew"
	if data != nil {
		l.data = data
	}
	if l.rev == 0 {
		return domain.E(op, domain.KindConflict, ErrLeaseLost)
	}
	b, _ := json.Marshal(leaseValue{Holder: l.holder, Expires: time.Now().Add(l.ttl), Data: l.data})
	rev, err := l.kv.Update(ctx, l.name, b, l.rev)
	if errors.Is(err, jetstream.ErrKeyExists) {
		l.rev = 0
		return domain.E(op, domain.KindConflict, ErrLeaseLost)
	}
	if err != nil {
		return leaseErr(op, err)
	}
	l.rev = rev
	return nil
}

// Release gives the lease up at once, keeping its data for the next holder. Releasing a
// lease already lost or released does nothing. Errors: KindUnavailable.
func (l *Lease) Release(ctx context.Context) error {
	const op = "eventlog.Lease.Release"
	if l.rev == 0 {
		return nil
	}
	b, _ := json.Marshal(leaseValue{Holder: l.holder, Data: l.data})
	_, err := l.kv.Update(ctx, l.name, b, l.rev)
	l.rev = 0
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return leaseErr(op, err)
	}
	return nil
}

func leaseErr(op string, err error) error {
	if errors.Is(err, jetstream.ErrInvalidKey) {
		return domain.E(op, domain.KindInvalid, err)
	}
	return domain.E(op, domain.KindUnavailable, err)
}

package eventlog

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kycstate/kycstate/domain"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// The data-key ring (DESIGN.md section 11). Each applicant's personal data is sealed
// under a key of its own; erasing the applicant destroys that key, which erases every
// copy of the data at once while the log, its digests and the decision trail stay.
//
// KYC_KEYS holds, per applicant, one subject kyc.keys.app.<appKey>.<applicantId> with
// the data key wrapped (AES-256-GCM) under the master key keys.master, and after an
// erasure a tombstone beside it, so that no key is ever made for that applicant again.
// kyc.keys.index holds the key of the blind index, wrapped likewise, and kyc.keys.log
// the log key that MACs every stored event (keyring_log.go); kyc.keys.pending.* records
// an erasure under way until its key is gone, so that an erasure interrupted by a crash
// is found and finished on restart.

// Stream and subjects of the key ring.
const (
	KeyStream   = "KYC_KEYS"
	KeySubjects = "kyc.keys.>"

	keyIndexSubject   = "kyc.keys.index"
	keyLogSubject     = "kyc.keys.log"
	keyPendingSubject = "kyc.keys.pending.>"
)

// Defaults of KeyringConfig.
const (
	// DefaultKeyCacheSize bounds the data keys a process keeps unwrapped in memory; each
	// costs well under a kilobyte.
	DefaultKeyCacheSize = 50_000
	// DefaultKeyCacheTTL is how long a process uses a data key before reading it again.
	// It bounds how long a key can outlive its erasure in the memory of a process other
	// than the one that erased (an ingest node that cached it): the erasing process drops
	// its own copy at once.
	DefaultKeyCacheTTL = time.Minute
)

// Errors of the key ring, under a domain kind.
var (
	// ErrErased: the applicant's data key is destroyed; its personal data is gone.
	ErrErased = errors.New("the applicant is erased: its data key is destroyed")
	// ErrNoKey: the applicant has no data key (nothing of it was ever sealed).
	ErrNoKey = errors.New("the applicant has no data key")
)

// MasterKey is keys.master or one of keys.previous: 32 bytes and the id recorded beside
// every key wrapped under it.
type MasterKey struct {
	id      string
	aead    cipher.AEAD
	session []byte // derived: signs the console's sessions (SessionKey)
}

// ParseMasterKey reads a master key given as 64 hex characters or base64 of 32 bytes.
// The error never holds the value.
func ParseMasterKey(s string) (MasterKey, error) {
	s = strings.TrimSpace(s)
	var raw []byte
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		raw = b
	} else if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 32 {
		raw = b
	} else if b, err := base64.RawStdEncoding.DecodeString(s); err == nil && len(b) == 32 {
		raw = b
	} else {
		return MasterKey{}, errors.New("must be 64 hex characters or base64 of 32 bytes")
	}
	return newMasterKey(raw)
}

// NewMasterKeyHex returns a fresh random master key, hex-encoded (serve's development
// mode writes one under data_dir).
func NewMasterKeyHex() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newMasterKey(raw []byte) (MasterKey, error) {
	aead, err := newAEAD(raw)
	if err != nil {
		return MasterKey{}, err
	}
	sum := sha256.Sum256(append([]byte("kycstate master key id\x00"), raw...))
	session, err := hkdf.Key(sha256.New, raw, nil, "kycstate console session v1", 32)
	if err != nil {
		return MasterKey{}, err
	}
	return MasterKey{id: hex.EncodeToString(sum[:8]), aead: aead, session: session}, nil
}

// SessionKey is a key for signing the console's sessions, derived from this master key
// (HKDF-SHA256, its own label): every query node given the same keys.master signs and
// accepts the same sessions, so a load balancer may send a signed-in officer to any of
// them. It opens nothing: knowing it gives no key that wraps data.
func (m MasterKey) SessionKey() []byte { return bytes.Clone(m.session) }

// ID is the master key's id: a hash of it, safe to log and recorded with every key
// wrapped under it.
func (m MasterKey) ID() string { return m.id }

// MasterKeys are keys.master (Current, which wraps every new key) and keys.previous
// (older keys, which still unwrap what they wrapped until `kycstate keys rewrap`).
type MasterKeys struct {
	Current  MasterKey
	Previous []MasterKey
}

// KeyringConfig tunes the ring's cache.
type KeyringConfig struct {
	CacheSize int           // default DefaultKeyCacheSize
	CacheTTL  time.Duration // default DefaultKeyCacheTTL
}

// Keyring is the data-key ring of one process. Safe for concurrent use.
type Keyring struct {
	l       *EventLog
	stream  jetstream.Stream
	current MasterKey
	masters map[string]MasterKey
	index   []byte  // the blind index's HMAC key
	logKey  *logKey // MACs stored events, seals operator payloads
	cache   *keyCache
	log     *zap.Logger

	// commit gathers the creation of new keys into one write (keyring_commit.go);
	// atomic: KYC_KEYS takes atomic batches.
	commit keyCommitter
	atomic bool
	// beforeWrite and afterWrite, when set, run around each write of new keys, with the
	// number of keys and once they are stored: test hooks (Config.AfterKeysWrite).
	beforeWrite func(n int)
	afterWrite  func(ctx context.Context)
	// fetches counts the keys read from KYC_KEYS one by one (readKey), for tests that
	// bound them.
	fetches atomic.Uint64
}

// KeyStreamConfig is KYC_KEYS: file storage, replicated like KYC_EVENTS, nothing ever
// evicted by a limit (Discard New): a key lost to a limit would be an erasure no one
// asked for. Direct gets are off so that every read of a key goes to the stream leader
// and sees the latest write: two nodes making the first key of one applicant must agree.
func KeyStreamConfig(cfg Config) jetstream.StreamConfig {
	cfg = cfg.withDefaults()
	return jetstream.StreamConfig{
		Name:              KeyStream,
		Description:       "kycstate data keys, one per applicant, wrapped under keys.master",
		Subjects:          []string{KeySubjects},
		Retention:         jetstream.LimitsPolicy,
		MaxConsumers:      -1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxAge:            0,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        -1,
		Discard:           jetstream.DiscardNew,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		Duplicates:        2 * time.Minute,
		AllowDirect:       false,
		// New keys are group-committed (keyring_commit.go): many as one atomic batch.
		AllowAtomicPublish: true,
	}
}

// openKeyring creates or opens KYC_KEYS and reads (or, the first time, makes) the blind
// index key. A master key that does not open the ring is refused here, at start, with an
// error naming keys.master: KindConflict, never a key made under the wrong master.
func openKeyring(ctx context.Context, l *EventLog, keys MasterKeys, kc KeyringConfig) (*Keyring, error) {
	const op = "eventlog.Open"
	if keys.Current.aead == nil {
		return nil, domain.E(op, domain.KindInvalid, "keys.master is not set")
	}
	s, err := l.ensureStream(ctx, op, KeyStreamConfig(l.cfg))
	if err != nil {
		return nil, err
	}
	if kc.CacheSize <= 0 {
		kc.CacheSize = DefaultKeyCacheSize
	}
	if kc.CacheTTL <= 0 {
		kc.CacheTTL = DefaultKeyCacheTTL
	}
	s, atomic := l.allowAtomic(ctx, s)
	k := &Keyring{l: l, stream: s, current: keys.Current, masters: map[string]MasterKey{},
		cache: newKeyCache(kc.CacheSize, kc.CacheTTL), log: l.log.Named("keys"),
		atomic: atomic}
	for _, m := range append([]MasterKey{keys.Current}, keys.Previous...) {
		if m.aead == nil {
			return nil, domain.E(op, domain.KindInvalid, "keys.previous holds an empty key")
		}
		k.masters[m.id] = m
	}
	// A standby's mirror takes no publishes: its index key is the primary's, copied by
	// the mirror. A node started before the mirror copied it waits for it (bounded by
	// ctx) rather than making one the mirror would refuse.
	mirror := s.CachedInfo().Config.Mirror != nil
	idx, err := k.dataKey(ctx, keyIndexSubject, !mirror)
	for waited := false; mirror && errors.Is(err, ErrNoKey); waited = true {
		if !waited {
			k.log.Info("waiting for the mirror of KYC_KEYS to copy the primary's index key")
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, domain.E(op, domain.KindUnavailable, fmt.Errorf("the mirror of %s holds no index key yet: %w", KeyStream, ctx.Err()))
		case <-t.C:
		}
		idx, err = k.dataKey(ctx, keyIndexSubject, false)
	}
	if err != nil {
		return nil, err
	}
	k.index = idx.raw
	lk, err := k.dataKey(ctx, keyLogSubject, true)
	if err != nil {
		return nil, err
	}
	if k.logKey, err = newLogKey(lk.raw, lk.since); err != nil {
		return nil, domain.E(op, domain.KindInternal, err)
	}
	k.afterWrite = l.cfg.AfterKeysWrite // applicants' keys only, not the index or log key
	return k, nil
}

// keyMsg is one message of KYC_KEYS (JSON). Kind says which: a wrapped key (data, index),
// an erased applicant's tombstone, or an erasure under way (pending).
type keyMsg struct {
	V     int    `json:"v"`
	Kind  string `json:"kind"`
	App   string `json:"app,omitempty"`
	ID    string `json:"id,omitempty"`
	KeyID string `json:"kid,omitempty"`
	Key   []byte `json:"key,omitempty"` // nonce || AES-256-GCM(master, data key)
	// Since (the log key only) is KYC_EVENTS' last sequence when the key was made: an
	// event at or below it without a MAC was stored before events were signed.
	Since uint64 `json:"since,omitempty"`
	// By and Reason are an erasure record's who and why, in clear in records written
	// before the log key; a record written now carries them in Sealed instead.
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Sealed (a pending record) is {by, reason} sealed under the log key's sealing key,
	// bound to the applicant (pendingAAD): the reason is in clear in no file, even for
	// the moment the record exists, and in no raft log or copy the record reaches.
	Sealed []byte    `json:"sealed,omitempty"`
	At     time.Time `json:"at"`
	// Provider (a pending record of another provider's applicant) names its provider;
	// empty for Allpass.
	Provider string `json:"provider,omitempty"`
}

const (
	kindData    = "data"
	kindIndex   = "index"
	kindLog     = "log"
	kindErased  = "erased"
	kindPending = "pending"
)

// appKeySubject is the subject of an Allpass applicant's data key.
func appKeySubject(app domain.AppKey, id domain.ApplicantID) (string, error) {
	return keySubject(domain.ProviderAllpass, app, id)
}

// keySubject is the subject of an applicant's data key: kyc.keys.app.<appKey>.<id> for
// Allpass, as it has always been, and kyc.keys.<provider>.<app>.<id> for the other
// providers (DESIGN.md section 13). "app" is no provider's name, so the two forms never
// meet, and an id two providers share has a key per provider. App and id are the third
// and fourth tokens in both. The tokens are checked as the event subject checks them.
func keySubject(p domain.Provider, app domain.AppKey, id domain.ApplicantID) (string, error) {
	if _, err := ProviderSubject(p, app, id); err != nil {
		return "", domain.E("eventlog.keySubject", domain.KindInvalid, err)
	}
	if p == domain.ProviderAllpass {
		return "kyc.keys.app." + string(app) + "." + string(id), nil
	}
	return "kyc.keys." + string(p) + "." + string(app) + "." + string(id), nil
}

func pendingSubject(app domain.AppKey, id domain.ApplicantID) string {
	return "kyc.keys.pending." + string(app) + "." + string(id)
}

// key is an unwrapped data key, or the news that there is none.
type key struct {
	raw    []byte
	aead   cipher.AEAD
	erased bool
	seq    uint64 // of the message read
	since  uint64 // the log key's keyMsg.Since
}

// dataKey returns the key on subject: from the cache, else from the stream; with create,
// it makes one when the subject holds none. Two processes creating at once agree: the
// key is published only if the subject is still empty (expected last subject sequence
// 0), and the loser reads the winner's back. In one process, the keys asked for while a
// write of keys is in flight are made and stored together (createKey), and callers
// asking for one subject at once get one key.
func (k *Keyring) dataKey(ctx context.Context, subject string, create bool) (*key, error) {
	const op = "eventlog.Keyring"
	if c := k.cache.get(subject); c != nil {
		return c, nil
	}
	got, err := k.readKey(ctx, subject)
	if err != nil {
		return nil, err
	}
	if got != nil {
		k.cache.put(subject, got)
		return got, nil
	}
	if !create {
		return nil, domain.E(op, domain.KindNotFound, ErrNoKey)
	}
	if subject == keyLogSubject {
		return k.createLogKey(ctx) // made once, with its since: not one of a batch
	}
	return k.createKey(ctx, subject)
}

// readKey reads the last message on subject: nil when there is none.
func (k *Keyring) readKey(ctx context.Context, subject string) (*key, error) {
	const op = "eventlog.Keyring"
	rctx, cancel := context.WithTimeout(ctx, k.l.requestTimeout)
	defer cancel()
	k.fetches.Add(1)
	msg, err := k.stream.GetLastMsgForSubject(rctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, domain.E(op, domain.KindUnavailable, fmt.Errorf("read data key: %w", err))
	}
	return k.unwrapMsg(subject, msg.Sequence, msg.Data)
}

// unwrapMsg reads the key message stored at seq on subject.
func (k *Keyring) unwrapMsg(subject string, seq uint64, data []byte) (*key, error) {
	const op = "eventlog.Keyring"
	var m keyMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, domain.E(op, domain.KindInternal, fmt.Errorf("%s seq %d is not a key message", KeyStream, seq))
	}
	switch m.Kind {
	case kindErased:
		return &key{erased: true, seq: seq}, nil
	case kindData, kindIndex, kindLog:
	default:
		return nil, domain.E(op, domain.KindInternal, fmt.Sprintf("%s seq %d has kind %q", KeyStream, seq, m.Kind))
	}
	master, ok := k.masters[m.KeyID]
	if !ok {
		return nil, domain.E(op, domain.KindConflict, fmt.Sprintf(
			"keys.master does not open the key ring: %s seq %d is wrapped under master key id %s, and keys.master (id %s) and keys.previous are other keys",
			KeyStream, seq, m.KeyID, k.current.id))
	}
	raw, err := unwrap(master, m.Key, subject)
	if err != nil {
		return nil, domain.E(op, domain.KindConflict, fmt.Sprintf(
			"%s seq %d does not unwrap under master key id %s: the key or the message is damaged", KeyStream, seq, m.KeyID))
	}
	aead, err := newAEAD(raw)
	if err != nil {
		return nil, domain.E(op, domain.KindInternal, err)
	}
	return &key{raw: raw, aead: aead, seq: seq, since: m.Since}, nil
}

// rewrapped reports whether Rewrap wraps messages of kind anew: every kind that holds a
// key (a snapshot's and the log key too); tombstones and pending erasures hold none.
func rewrapped(kind string) bool {
	return kind == kindData || kind == kindIndex || kind == kindSnapshot || kind == kindLog
}

// secureDelete overwrites message seq of s, waiting at most timeout for each request. A
// message already gone (shredded by another node or by the projector as it folded the
// erasure, deleted by an earlier try, dropped by a bound) counts as deleted: nats.go
// reports the server's "sequence not found" only as text inside
// ErrMsgDeleteUnsuccessful, so that case is told by asking for the message.
func secureDelete(ctx context.Context, s jetstream.Stream, seq uint64, timeout time.Duration) (gone bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	err = s.SecureDeleteMsg(dctx, seq)
	cancel()
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return true, nil
	case errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful):
		gctx, cancel := context.WithTimeout(ctx, timeout)
		_, gerr := s.GetMsg(gctx, seq)
		cancel()
		if errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return true, nil
		}
	}
	return false, err
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func newAEAD(raw []byte) (cipher.AEAD, error) {
	if len(raw) != 32 {
		return nil, errors.New("key must be 32 bytes")
	}
	b, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// wrap seals a data key under a master key, bound to its subject (the applicant): a
// wrapped key copied to another applicant's subject does not unwrap.
func wrap(m MasterKey, raw []byte, subject string) []byte {
	return seal(m.aead, raw, []byte("kycstate.datakey.v1\x00"+subject))
}

func unwrap(m MasterKey, wrapped []byte, subject string) ([]byte, error) {
	return open(m.aead, wrapped, []byte("kycstate.datakey.v1\x00"+subject))
}

func seal(a cipher.AEAD, plain, aad []byte) []byte {
	out := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	rand.Read(out)
	return a.Seal(out, out, plain, aad)
}

var errOpen = errors.New("ciphertext does not open")

func open(a cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < a.NonceSize()+a.Overhead() {
		return nil, errOpen
	}
	plain, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], aad)
	if err != nil {
		return nil, errOpen
	}
	return plain, nil
}

// Rewrap wraps every key of the ring under keys.master that is wrapped under another
// (a key of keys.previous), after a rotation: each is published anew on its subject
// (only if nothing was written there since, so a concurrent erasure wins), then the old
// message is securely deleted. It returns how many keys it rewrapped. Once it has run,
// keys.previous can be emptied. Errors: KindUnavailable; KindConflict for a key wrapped
// under a master key that is not configured.
func (k *Keyring) Rewrap(ctx context.Context) (int, error) {
	const op = "eventlog.Keyring.Rewrap"
	n := 0
	for seq := uint64(1); ; {
		rctx, cancel := context.WithTimeout(ctx, k.l.requestTimeout)
		msg, err := k.stream.GetMsg(rctx, seq, jetstream.WithGetMsgSubject(KeySubjects))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, nil
		}
		if err != nil {
			return n, domain.E(op, domain.KindUnavailable, err)
		}
		seq = msg.Sequence + 1
		var m keyMsg
		if json.Unmarshal(msg.Data, &m) != nil || !rewrapped(m.Kind) || m.KeyID == k.current.id {
			continue
		}
		master, ok := k.masters[m.KeyID]
		if !ok {
			return n, domain.E(op, domain.KindConflict, fmt.Sprintf("%s seq %d is wrapped under master key id %s, which is neither keys.master nor in keys.previous", KeyStream, msg.Sequence, m.KeyID))
		}
		raw, err := unwrap(master, m.Key, msg.Subject)
		if err != nil {
			return n, domain.E(op, domain.KindConflict, fmt.Sprintf("%s seq %d does not unwrap under master key id %s", KeyStream, msg.Sequence, m.KeyID))
		}
		m.KeyID, m.Key = k.current.id, wrap(k.current, raw, msg.Subject)
		data, _ := json.Marshal(m)
		_, err = k.l.js.PublishMsg(ctx, &nats.Msg{Subject: msg.Subject, Data: data},
			jetstream.WithExpectStream(KeyStream), jetstream.WithExpectLastSequencePerSubject(msg.Sequence))
		if isWrongLastSeq(err) {
			continue // erased or rewrapped meanwhile
		}
		if err != nil {
			return n, domain.E(op, domain.KindUnavailable, err)
		}
		if _, err := secureDelete(ctx, k.stream, msg.Sequence, k.l.requestTimeout); err != nil {
			return n, domain.E(op, domain.KindUnavailable, err)
		}
		k.cache.drop(msg.Subject)
		n++
	}
}
